//! Prints a chat render, its token ids and a streamed detokenization with the built-in
//! tokenizer: `cargo run -p llm-emu-text --example text_smoke`.
use llm_emu_text::*;

fn main() -> Result<(), TextError> {
    let m = TextModel::load(&TokenizerSource::Builtin)?;
    let msgs = serde_json::json!([{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hello"},{"type":"text","text":"wörld 😀"}]}]);
    let p = m.render_chat(&msgs, &ChatTemplateOptions::default())?;
    println!("{p:?}");
    let ids = m.encode(&p, false)?;
    println!(
        "{} ids {:?} eos {:?} vocab {}",
        ids.len(),
        &ids[..8],
        m.eos_token_id(),
        m.vocab_size()
    );
    let out = m.encode("Héllo wörld 😀 stop here", false)?;
    let mut d = m.detokenizer(
        &ids,
        DetokenizeOptions {
            stop: vec!["here".into()],
            streaming: true,
            ..Default::default()
        },
    );
    for t in out {
        println!("{t} {:?}", d.push(t)?);
    }
    println!("final {:?}", d.text());
    Ok(())
}

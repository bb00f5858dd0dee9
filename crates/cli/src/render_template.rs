//! `llm-emu render-template` (hidden): renders one chat template for `llm-emu serve`, which
//! runs it as a child process under hard limits for templates that requests bring
//! (`llm_emu_serve::template_sandbox`). Reads the JSON request on stdin, writes the reply on
//! stdout.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

pub fn run() -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("error: reading the render request: {e}");
        return ExitCode::FAILURE;
    }
    let reply = llm_emu_serve::template_sandbox::render_request(&input);
    let mut out = std::io::stdout().lock();
    match out.write_all(&reply).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing the reply: {e}");
            ExitCode::FAILURE
        }
    }
}

//! vLLM's command lines as `llm-emu serve` and `llm-emu bench` take them: vLLM's short aliases
//! (`-tp 2`) and underscore spellings (`--max_num_seqs`) mean the long option; vLLM options
//! with no bearing on an emulated server (weights loading, remote code, kernels, log levels)
//! are accepted and ignored with a warning; any other vLLM option llm-emu lacks is refused as
//! "a vLLM option that llm-emu does not support" instead of clap's "similar argument" tip.
//! `data/vllm-0.19-flags.txt` lists vLLM 0.19's options.

use std::ffi::OsString;

/// vLLM 0.19's long options, `serve --flag` / `bench --flag` per line.
const VLLM_FLAGS: &str = include_str!("../data/vllm-0.19-flags.txt");

/// How many values an ignored option takes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Arity {
    /// A switch.
    None,
    /// One value.
    One,
    /// One value if the next word is not an option (argparse's `nargs='?'`).
    Optional,
    /// Values up to the next option (`nargs='+'`).
    Many,
}

/// `vllm serve` options accepted and ignored: they choose how real weights are fetched and
/// loaded, which kernels run, or how verbose the real server is, none of which an emulated
/// engine has.
const IGNORED_SERVE: &[(&str, Arity)] = &[
    ("--trust-remote-code", Arity::None),
    ("--no-trust-remote-code", Arity::None),
    ("--download-dir", Arity::One),
    ("--load-format", Arity::One),
    ("--dtype", Arity::One),
    ("--revision", Arity::One),
    ("--code-revision", Arity::One),
    ("--tokenizer-revision", Arity::One),
    ("--tokenizer-mode", Arity::One),
    ("--hf-token", Arity::Optional),
    ("--max-parallel-loading-workers", Arity::One),
    ("--safetensors-load-strategy", Arity::One),
    ("--model-loader-extra-config", Arity::One),
    ("--ignore-patterns", Arity::Many),
    ("--pt-load-map-location", Arity::One),
    ("--use-tqdm-on-load", Arity::None),
    ("--no-use-tqdm-on-load", Arity::None),
    ("--attention-backend", Arity::One),
    ("--distributed-executor-backend", Arity::One),
    ("--disable-custom-all-reduce", Arity::None),
    ("--no-disable-custom-all-reduce", Arity::None),
    ("--uvicorn-log-level", Arity::One),
    ("--disable-fastapi-docs", Arity::None),
    ("--no-disable-fastapi-docs", Arity::None),
    ("--enable-log-requests", Arity::None),
    ("--no-enable-log-requests", Arity::None),
    ("--enable-log-outputs", Arity::None),
    ("--no-enable-log-outputs", Arity::None),
    ("--enable-log-deltas", Arity::None),
    ("--no-enable-log-deltas", Arity::None),
    ("--max-log-len", Arity::One),
    ("--log-error-stack", Arity::None),
    ("--no-log-error-stack", Arity::None),
];

/// vLLM's short aliases of `vllm serve`, by their long option.
const SERVE_ALIASES: &[(&str, &str)] = &[
    ("-tp", "--tensor-parallel-size"),
    ("-pp", "--pipeline-parallel-size"),
    ("-dp", "--data-parallel-size"),
    ("-asc", "--api-server-count"),
    ("-ep", "--enable-expert-parallel"),
    ("-q", "--quantization"),
    ("-n", "--nnodes"),
    ("-r", "--node-rank"),
    ("-dcp", "--decode-context-parallel-size"),
    ("-pcp", "--prefill-context-parallel-size"),
    ("-dpn", "--data-parallel-rank"),
    ("-dpr", "--data-parallel-start-rank"),
    ("-dpl", "--data-parallel-size-local"),
    ("-dpa", "--data-parallel-address"),
    ("-dpp", "--data-parallel-rpc-port"),
    ("-dpb", "--data-parallel-backend"),
    ("-dph", "--data-parallel-hybrid-lb"),
    ("-dpe", "--data-parallel-external-lb"),
    ("-sc", "--speculative-config"),
    ("-cc", "--compilation-config"),
    ("-ac", "--attention-config"),
];

/// Whether `flag` (`--name`, no value) is an option of vLLM's `cmd` (`serve` or `bench`).
pub fn is_vllm_flag(cmd: &str, flag: &str) -> bool {
    VLLM_FLAGS
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .any(|(c, f)| c == cmd && f == flag)
}

/// The command line with vLLM's spellings made llm-emu's and the ignored vLLM options taken
/// out (a warning on stderr for each).
pub fn normalize(args: Vec<OsString>) -> Vec<OsString> {
    let cmd = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    if cmd != "serve" && cmd != "bench" {
        return args;
    }
    let mut out: Vec<OsString> = Vec::with_capacity(args.len());
    let mut i = 0;
    while i < args.len() {
        let Some(word) = args[i].to_str().map(str::to_string) else {
            out.push(args[i].clone());
            i += 1;
            continue;
        };
        i += 1;
        if word == "--" {
            out.push(word.into());
            out.extend(args[i..].iter().cloned());
            break;
        }
        // The program and the subcommand.
        if i <= 2 {
            out.push(word.into());
            continue;
        }
        let word = spelled_as_llm_emu(cmd, &word);
        let (name, inline_value) = match word.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (word.clone(), None),
        };
        let ignored = if cmd == "serve" {
            IGNORED_SERVE.iter().find(|(f, _)| *f == name)
        } else {
            None
        };
        let Some(&(_, arity)) = ignored else {
            out.push(word.into());
            continue;
        };
        let mut dropped = vec![word.clone()];
        let is_value = |a: &OsString| a.to_str().is_some_and(|s| !s.starts_with('-') || s == "-");
        if inline_value.is_none() {
            match arity {
                Arity::None => {}
                Arity::One => {
                    if let Some(v) = args.get(i) {
                        dropped.push(v.to_string_lossy().into_owned());
                        i += 1;
                    }
                }
                Arity::Optional => {
                    if args.get(i).is_some_and(is_value) {
                        dropped.push(args[i].to_string_lossy().into_owned());
                        i += 1;
                    }
                }
                Arity::Many => {
                    while args.get(i).is_some_and(is_value) {
                        dropped.push(args[i].to_string_lossy().into_owned());
                        i += 1;
                    }
                }
            }
        }
        eprintln!(
            "llm-emu {cmd}: warning: `{}` is a vLLM option with no counterpart in an emulated \
             server: ignored",
            dropped.join(" ")
        );
    }
    out
}

/// vLLM's short alias or underscore spelling of an option as llm-emu spells it.
fn spelled_as_llm_emu(cmd: &str, word: &str) -> String {
    if cmd == "serve" {
        if let Some((_, long)) = SERVE_ALIASES.iter().find(|(short, _)| *short == word) {
            return long.to_string();
        }
    }
    // vLLM's parser reads `--max_num_seqs` as `--max-num-seqs` (the name, not the value).
    if let Some(rest) = word.strip_prefix("--") {
        let (name, value) = match rest.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (rest, None),
        };
        if name.contains('_') {
            let name = name.replace('_', "-");
            return match value {
                Some(v) => format!("--{name}={v}"),
                None => format!("--{name}"),
            };
        }
    }
    word.to_string()
}

/// For clap's "unexpected argument" error on a vLLM option: what to say instead.
pub fn explain_unknown(err: &clap::Error, args: &[OsString]) -> Option<String> {
    if err.kind() != clap::error::ErrorKind::UnknownArgument {
        return None;
    }
    let cmd = args.get(1).and_then(|a| a.to_str())?;
    if cmd != "serve" && cmd != "bench" {
        return None;
    }
    let arg = match err.get(clap::error::ContextKind::InvalidArg)? {
        clap::error::ContextValue::String(s) => s.clone(),
        _ => return None,
    };
    let flag = arg.split('=').next().unwrap_or(&arg);
    if !is_vllm_flag(cmd, flag) {
        return None;
    }
    let vllm = if cmd == "serve" {
        "vllm serve"
    } else {
        "vllm bench serve"
    };
    Some(format!(
        "error: {flag} is a `{vllm}` option that llm-emu {cmd} does not support (see \
         `llm-emu {cmd} --help` for the options it has, and docs/serve.md, \"vLLM flags\")"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn vllm_spellings_are_read_and_ignored_options_dropped() {
        let got = normalize(words(
            "llm-emu serve m -tp 2 --max_num_seqs 8 --dtype bfloat16 --trust-remote-code \
             --ignore-patterns a b --port 0 --hf-token --download-dir=/x --max-model-len=64",
        ));
        assert_eq!(
            got,
            words(
                "llm-emu serve m --tensor-parallel-size 2 --max-num-seqs 8 --port 0 \
                 --max-model-len=64"
            )
        );
        // Values after `--` and other subcommands are left alone.
        assert_eq!(
            normalize(words("llm-emu simulate --max_num_seqs 8")),
            words("llm-emu simulate --max_num_seqs 8")
        );
        assert_eq!(
            normalize(words("llm-emu bench --dtype x")),
            words("llm-emu bench --dtype x")
        );
    }

    #[test]
    fn the_flag_list_holds_vllms_options() {
        assert!(is_vllm_flag("serve", "--kv-cache-dtype"));
        assert!(is_vllm_flag("serve", "--enable-log-requests"));
        assert!(is_vllm_flag("bench", "--ramp-up-strategy"));
        assert!(!is_vllm_flag("bench", "--kv-cache-dtype"));
        assert!(!is_vllm_flag("serve", "--no-such-flag"));
        for (f, _) in IGNORED_SERVE {
            assert!(is_vllm_flag("serve", f), "{f}");
        }
        for (_, long) in SERVE_ALIASES {
            assert!(is_vllm_flag("serve", long), "{long}");
        }
    }
}

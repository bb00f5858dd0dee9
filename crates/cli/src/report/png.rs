//! PNG export: a full-page screenshot of the report taken by headless Chromium
//! (`--screenshot`), for docs. The browser is `$LLM_EMU_CHROMIUM`, else the first of
//! `chromium`, `chromium-browser`, `google-chrome` on the `PATH`.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The page width the report is laid out for, in CSS pixels.
const WIDTH: u32 = 1210;

/// The browser to use, if one is installed.
pub fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LLM_EMU_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// Screenshots `html` (a file) into `png`, `height` CSS pixels tall.
pub fn screenshot(html: &Path, png: &Path, height: u32) -> Result<()> {
    let Some(browser) = chromium() else {
        bail!(
            "--png needs Chromium (`apt-get install chromium`, or set LLM_EMU_CHROMIUM to a \
             Chromium or Chrome binary)"
        );
    };
    let html = std::fs::canonicalize(html).with_context(|| format!("{}", html.display()))?;
    let out = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            &format!("--window-size={WIDTH},{height}"),
            &format!("--screenshot={}", png.display()),
        ])
        .arg(format!("file://{}", html.display()))
        .output()
        .with_context(|| format!("running {}", browser.display()))?;
    if !out.status.success() || !png.is_file() {
        bail!(
            "{} could not take the screenshot ({}): {}",
            browser.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

//! Builds the web client (`web/`) with npm into `$OUT_DIR/dist`, which `src/lib.rs` embeds.
//!
//! Without npm (or when the build fails) it embeds a one-page placeholder that says how to
//! build the web client, and prints a cargo warning: the Rust build never fails because of the
//! web client. `JIBBER_WEB_REQUIRED=1` turns that into an error (CI sets it). `JIBBER_NPM` names
//! the npm program (default `npm`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let web = manifest.join("../../web");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("dist");
    for input in [
        "src",
        "public",
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
        "tsconfig.json",
    ] {
        println!("cargo:rerun-if-changed={}", web.join(input).display());
    }
    println!("cargo:rerun-if-env-changed=JIBBER_WEB_REQUIRED");
    println!("cargo:rerun-if-env-changed=JIBBER_NPM");

    if let Err(why) = build(&web, &out) {
        if std::env::var("JIBBER_WEB_REQUIRED").is_ok_and(|v| v == "1") {
            panic!("the web client did not build: {why}");
        }
        println!(
            "cargo:warning=the web client is not embedded ({why}); install Node.js 20+ and npm, then rebuild"
        );
        placeholder(&out);
    }
}

fn build(web: &Path, out: &Path) -> Result<(), String> {
    // JIBBER_NPM picks another npm (or, set to a missing path, shows the build without it).
    let npm = std::env::var("JIBBER_NPM")
        .unwrap_or_else(|_| if cfg!(windows) { "npm.cmd" } else { "npm" }.to_owned());
    let npm = npm.as_str();
    let installed = web.join("node_modules/.package-lock.json");
    let stale = match (
        std::fs::metadata(&installed).and_then(|m| m.modified()),
        std::fs::metadata(web.join("package-lock.json")).and_then(|m| m.modified()),
    ) {
        (Ok(installed), Ok(lock)) => lock > installed,
        _ => true,
    };
    if stale {
        run(
            Command::new(npm)
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(web),
            "npm ci",
        )?;
    }
    let _ = std::fs::remove_dir_all(out);
    run(
        Command::new(npm)
            .args(["run", "build", "--", "--outDir"])
            .arg(out)
            .arg("--emptyOutDir")
            .current_dir(web),
        "npm run build",
    )?;
    if out.join("index.html").is_file() {
        Ok(())
    } else {
        Err("npm run build wrote no index.html".to_owned())
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let output = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let tail = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        s.lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" | ")
    };
    Err(format!(
        "{what} failed: {} {}",
        tail(&output.stdout),
        tail(&output.stderr)
    ))
}

fn placeholder(out: &Path) {
    std::fs::create_dir_all(out).expect("create OUT_DIR/dist");
    std::fs::write(
        out.join("index.html"),
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Jibber</title></head>\
         <body><h1>Jibber</h1><p>The server is running, but this binary was built without its web \
         client, because npm was not available when it was compiled.</p><p>Install Node.js 20 or \
         newer with npm, then rebuild: <code>cargo run --release -p jibber-cli -- serve</code>.</p>\
         <p>The API is at <code>/api/v1</code>.</p></body></html>\n",
    )
    .expect("write the placeholder page");
}

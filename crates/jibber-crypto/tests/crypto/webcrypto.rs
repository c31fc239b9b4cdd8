//! The specification implemented a second time, in JavaScript on Node's WebCrypto (the web
//! client's platform), must reproduce the committed vectors: `tests/webcrypto/check_vectors.mjs`.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn webcrypto_reproduces_the_vectors() {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/webcrypto/check_vectors.mjs");
    let out = Command::new("node")
        .arg(&script)
        .output()
        .expect("node (20 or later, as the README says) runs the WebCrypto vector check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(" passed, 0 failed"),
        "WebCrypto vector check failed:\n{stdout}\n{stderr}"
    );
}

//! The fuzz targets' checks (`fuzz/src/lib.rs`) on every file of their seed corpora
//! (`fuzz/corpus/<target>/`), crashes found by fuzzing included: a smoke of each target that
//! needs neither cargo-fuzz nor a nightly compiler. `scripts/fuzz.sh SECONDS` fuzzes for real.
//! What fuzzing found is also checked here on a real server.

use std::path::PathBuf;

use crate::common::{TestServer, WsClient};

#[allow(unreachable_pub, dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod checks;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_has_a_seed_corpus_and_every_corpus_a_target() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut folders: Vec<String> = std::fs::read_dir(&dir)
        .expect("fuzz/corpus")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    folders.sort();
    let mut targets: Vec<String> = checks::TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    targets.sort();
    assert_eq!(folders, targets);
    for (name, _) in checks::TARGETS {
        assert!(corpus(name).len() >= 5, "{name}: at least a few seeds");
        let target = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/fuzz_targets")
            .join(format!("{name}.rs"));
        assert!(target.exists(), "{} is missing", target.display());
    }
}

fn run(target: &str) {
    let check = checks::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, check)| *check)
        .expect("a known target");
    for file in corpus(target) {
        let data = std::fs::read(&file).expect("a readable corpus file");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target}: {} fails", file.display());
    }
}

#[test]
fn engineio_corpus() {
    run("engineio");
}

#[test]
fn socketio_corpus() {
    run("socketio");
}

#[test]
fn http_head_corpus() {
    run("http_head");
}

#[test]
fn http_chunked_corpus() {
    run("http_chunked");
}

#[test]
fn ws_frames_corpus() {
    run("ws_frames");
}

#[test]
fn adapter_corpus() {
    run("adapter");
}

/// Found by the `ws_frames` target: with no message limit (`max_payload` at usize::MAX), a frame
/// header whose 64-bit length has its top bit set (RFC 6455 §5.2 forbids it) overflowed the
/// reader's arithmetic; the session's task panicked, the connection dropped without a close
/// frame and the session was never removed. It is a protocol error, the session ends, and the
/// server goes on.
#[test]
fn a_frame_length_with_its_top_bit_set_is_a_protocol_error_without_a_limit() {
    let server = TestServer::conformance_with(|e| e.max_payload = usize::MAX);
    let (mut c, _) = WsClient::open(server.addr, "/engine.io/");
    let mut frame = vec![0x82, 0xff];
    frame.extend_from_slice(&u64::MAX.to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    c.send_raw(&frame);
    assert_eq!(c.expect_closed(), Some(1002));
    server.wait_until("the session to end", |m| m.sessions_open() == 0);
    let (mut other, _) = WsClient::open(server.addr, "/engine.io/");
    other.send_text("4still here");
    assert_eq!(other.recv_text(), "4still here");
}

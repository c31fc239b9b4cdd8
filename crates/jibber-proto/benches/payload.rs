//! Parsing a `sendMessage` payload into `SendMessageRequest` (JSON, base64 fields, RFC 3339
//! time, unknown fields refused), as the server does for every send:
//! `cargo bench -p jibber-proto --features bench`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jibber_proto::api::SendMessageRequest;
use serde_json::json;

fn payload(cipher_len: usize) -> String {
    use base64::Engine;
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
    json!({
        "chatId": "0192f3a4-5b6c-7d8e-9f00-112233445566",
        "receiver": "0192f3a4-5b6c-7d8e-9f00-112233445577",
        "cipher": b64(cipher_len),
        "iv": b64(12),
        "signature": b64(64),
        "senderPublicIdKey": b64(32),
        "senderPublicSigningKey": b64(32),
        "receiverPublicIdKey": b64(32),
        "clientTimestamp": "2026-11-22T06:00:00.123Z",
        "tempMessageId": "tmp-0001",
    })
    .to_string()
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("send_message_payload");
    for cipher in [117usize, 65_536] {
        let text = payload(cipher);
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        g.throughput(Throughput::Bytes(text.len() as u64));
        // The socket handler receives a parsed `Value`; REST receives the bytes.
        g.bench_with_input(BenchmarkId::new("from_value", cipher), &value, |b, v| {
            b.iter(|| serde_json::from_value::<SendMessageRequest>(v.clone()).expect("valid"))
        });
        g.bench_with_input(BenchmarkId::new("from_str", cipher), &text, |b, t| {
            b.iter(|| serde_json::from_str::<SendMessageRequest>(t).expect("valid"))
        });
    }
    let mut bad = serde_json::from_str::<serde_json::Value>(&payload(117)).expect("json");
    bad["sender"] = json!("0192f3a4-5b6c-7d8e-9f00-112233445588");
    g.bench_function("refused_unknown_field", |b| {
        b.iter(|| serde_json::from_value::<SendMessageRequest>(bad.clone()).expect_err("refused"))
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);

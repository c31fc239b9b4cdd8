//! Envelope seal and open (X25519 + HKDF + AES-256-GCM + Ed25519, docs/crypto.md):
//! `cargo bench -p jibber-crypto --features bench`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jibber_crypto::envelope::{open, seal};
use jibber_crypto::{KeyRing, MessageContext};
use uuid::Uuid;

fn envelope(c: &mut Criterion) {
    let alice = KeyRing::generate();
    let bob = KeyRing::generate();
    let context = MessageContext {
        chat_id: Uuid::now_v7(),
        sender: Uuid::now_v7(),
        receiver: Uuid::now_v7(),
        client_timestamp_ms: 1_700_000_000_000,
        temp_message_id: "bench-0001".into(),
    };
    let bob_id = bob.current().public_keys().id_key;
    let alice_public = [alice.current().public_keys()];
    let mut g = c.benchmark_group("envelope");
    for size in [100usize, 4096] {
        let plaintext = vec![b'x'; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("seal", size), &plaintext, |b, p| {
            b.iter(|| seal(alice.current(), &bob_id, &context, p).expect("seal"))
        });
        let sealed = seal(alice.current(), &bob_id, &context, &plaintext).expect("seal");
        assert_eq!(
            open(&bob, &alice_public, &context, &sealed).expect("open"),
            plaintext
        );
        g.bench_with_input(BenchmarkId::new("open", size), &sealed, |b, e| {
            b.iter(|| open(&bob, &alice_public, &context, e).expect("open"))
        });
    }
    g.finish();
}

criterion_group!(benches, envelope);
criterion_main!(benches);

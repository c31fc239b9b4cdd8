//! Safety numbers and the key-change check.

use jibber_crypto::safety::{KeyCheck, check_keys, fingerprint};
use jibber_crypto::{SafetyNumber, UserKeys};
use uuid::Uuid;

#[test]
fn both_sides_see_the_same_number() {
    let (a, b) = (
        UserKeys::generate().public_keys(),
        UserKeys::generate().public_keys(),
    );
    let (ia, ib) = (Uuid::now_v7(), Uuid::now_v7());
    let n = SafetyNumber::new((&ia, &a), (&ib, &b));
    assert_eq!(n, SafetyNumber::new((&ib, &b), (&ia, &a)));
    assert_eq!(n.digits().len(), 60);
    assert!(n.digits().bytes().all(|c| c.is_ascii_digit()));
    assert_eq!(n.groups().len(), 12);
    assert!(n.groups().iter().all(|g| g.len() == 5));
    assert_eq!(n.to_string().len(), 60 + 11);
    assert!(n.matches(&n.to_string()));
    assert!(n.matches(&format!(" {}\n", n.digits())));
    assert!(!n.matches(&n.digits()[1..]));
    assert_eq!(fingerprint(&ia, &a).len(), 30);
}

#[test]
fn any_change_changes_the_number() {
    let (a, b) = (
        UserKeys::generate().public_keys(),
        UserKeys::generate().public_keys(),
    );
    let (ia, ib) = (Uuid::now_v7(), Uuid::now_v7());
    let n = SafetyNumber::new((&ia, &a), (&ib, &b));
    let a2 = UserKeys::generate().public_keys();
    let mixed_id = jibber_crypto::PublicKeys {
        id_key: a2.id_key,
        ..a
    };
    let mixed_signing = jibber_crypto::PublicKeys {
        signing_key: a2.signing_key,
        ..a
    };
    for other in [
        SafetyNumber::new((&ia, &a2), (&ib, &b)),
        SafetyNumber::new((&ia, &mixed_id), (&ib, &b)),
        SafetyNumber::new((&ia, &mixed_signing), (&ib, &b)),
        SafetyNumber::new((&Uuid::now_v7(), &a), (&ib, &b)),
    ] {
        assert_ne!(n, other);
    }
}

#[test]
fn key_change_check() {
    let old = UserKeys::generate().public_keys();
    let new = UserKeys::generate().public_keys();
    assert_eq!(check_keys(None, &new), KeyCheck::FirstSeen);
    assert_eq!(check_keys(Some(&new), &new), KeyCheck::Unchanged);
    match check_keys(Some(&old), &new) {
        KeyCheck::Changed(change) => {
            assert_eq!(change.previous, old);
            assert_eq!(change.current, new);
            assert!(change.id_key_changed() && change.signing_key_changed());
        }
        other => panic!("expected a key change, got {other:?}"),
    }
    let only_signing = jibber_crypto::PublicKeys {
        id_key: old.id_key,
        ..new
    };
    match check_keys(Some(&old), &only_signing) {
        KeyCheck::Changed(change) => {
            assert!(!change.id_key_changed() && change.signing_key_changed());
        }
        other => panic!("expected a key change, got {other:?}"),
    }
}

//! Each detector on positive and negative samples.

use super::*;

fn all() -> Detector {
    Detector::new(&Spec {
        pii: Kind::PII.iter().map(|(_, k)| *k).collect(),
        words: vec!["project-bluebird".into(), "Falcon".into()],
        regex: vec!["(?i)internal use only".into()],
    })
    .unwrap()
}

fn kinds(text: &str) -> Vec<Kind> {
    all().find(text).into_iter().map(|f| f.kind).collect()
}

#[test]
fn positives_each_kind() {
    let cases: &[(&str, Kind)] = &[
        ("mail jane.doe+x@example.co.uk now", Kind::Email),
        ("call +1 415 555 2671 today", Kind::Phone),
        ("call (415) 555-2671 today", Kind::Phone),
        ("card 4111 1111 1111 1111 exp", Kind::CreditCard),
        ("card 4111-1111-1111-1111", Kind::CreditCard),
        ("ssn 123-45-6789.", Kind::Ssn),
        ("iban GB82 WEST 1234 5698 7654 32 ok", Kind::Iban),
        ("iban DE89370400440532013000", Kind::Iban),
        ("host 10.0.12.7 down", Kind::IpAddress),
        ("host 2001:db8:85a3::8a2e:370:7334 down", Kind::IpAddress),
        ("key sk-proj-abcdefghijklmnopqrstuvwxyz123456", Kind::Secret),
        ("key sk-ant-api03-abcdefghijklmnopqrstuvwxyz", Kind::Secret),
        ("aws AKIAIOSFODNN7EXAMPLE", Kind::Secret),
        ("gh ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ", Kind::Secret),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            Kind::Secret,
        ),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
            Kind::Secret,
        ),
        ("the PROJECT-BLUEBIRD launch", Kind::Word),
        ("a falcon flew", Kind::Word),
        ("For Internal Use Only: x", Kind::Regex),
    ];
    for (text, kind) in cases {
        assert_eq!(kinds(text), vec![*kind], "{text}");
    }
}

#[test]
fn negatives() {
    for text in [
        "order 1000000000000007 shipped",    // Luhn-valid, no issuer digit
        "order 4111 1111 1111 1112 shipped", // Luhn fails
        "ref 000-12-3456 and 900-12-3456",   // never-issued SSN areas
        "iban GB82 WEST 1234 5698 7654 33",  // bad checksum
        "version 1.2.3.4000 and 999.1.1.1",  // not addresses
        "call 4155552671",                   // digits without separators
        "sk-short and AKIA123",              // too short to be keys
        "falconry and bluebirds",            // not whole words
        "internal use",                      // regex not matched
        "user at example dot com",           // not an email
        "std::vec::Vec and a::b",            // paths, not IPv6
    ] {
        assert_eq!(kinds(text), vec![], "{text}");
    }
}

#[test]
fn redaction_replaces_each_match() {
    let d = all();
    let (out, found) = d
        .redact("write to a@b.io or b@c.io, card 4111111111111111")
        .unwrap();
    assert_eq!(
        out,
        "write to [REDACTED:EMAIL] or [REDACTED:EMAIL], card [REDACTED:CREDIT_CARD]"
    );
    assert_eq!(found.len(), 3);
    assert!(d.redact("nothing here").is_none());
}

#[test]
fn only_enabled_kinds() {
    let d = Detector::new(&Spec {
        pii: vec![Kind::Email],
        ..Spec::default()
    })
    .unwrap();
    assert_eq!(d.find("a@b.io 4111111111111111").len(), 1);
}

#[test]
fn invalid_regex_is_reported_with_its_index() {
    let e = Detector::new(&Spec {
        regex: vec!["ok".into(), "(unclosed".into()],
        ..Spec::default()
    })
    .unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].index, 1);
}

#[test]
fn max_len_is_bounded() {
    let d = Detector::new(&Spec {
        pii: vec![Kind::Email, Kind::CreditCard],
        words: vec!["bluebird".into()],
        ..Spec::default()
    })
    .unwrap();
    assert!(d.max_len() > 20 && d.max_len() < 2000, "{}", d.max_len());
    let r = Detector::new(&Spec {
        regex: vec!["a.*b".into()],
        ..Spec::default()
    })
    .unwrap();
    assert_eq!(r.max_len(), UNBOUNDED_HOLD_BACK);
}

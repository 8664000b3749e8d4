//! Checksums and sanity checks that turn a pattern's candidate into a finding: Luhn for card
//! numbers, ISO 13616 mod-97 for IBANs, the SSA's never-issued ranges for SSNs, address parsing
//! for IPs. Pure functions on the matched text; they never allocate.

/// Card numbers: 13 to 19 digits (spaces and dashes between them allowed), an issuer's first
/// digit (2 to 6: Mastercard, Amex, Visa, Mastercard, Discover/UnionPay) and a valid Luhn check.
pub fn credit_card(s: &str) -> bool {
    let digits = || s.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0');
    let n = digits().count();
    if !(13..=19).contains(&n) || !matches!(digits().next(), Some(2..=6)) {
        return false;
    }
    let sum: u32 = digits()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// IBANs: 15 to 34 characters (spaces ignored) whose mod-97 check (country and check digits
/// moved to the end, letters as 10..35) is 1.
pub fn iban(s: &str) -> bool {
    let chars: Vec<u8> = s.bytes().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&chars.len()) {
        return false;
    }
    let mut rem: u32 = 0;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// US SSNs `AAA-GG-SSSS`: area not 000, 666 or 9xx, group not 00, serial not 0000.
pub fn ssn(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 11 {
        return false;
    }
    let area = &s[0..3];
    area != "000" && area != "666" && b[0] != b'9' && &s[4..6] != "00" && &s[7..11] != "0000"
}

/// An IPv4 or IPv6 address as the standard library parses it.
pub fn ip_address(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

/// International phone numbers: 8 to 15 digits (E.164).
pub fn phone(s: &str) -> bool {
    let n = s.bytes().filter(u8::is_ascii_digit).count();
    (8..=15).contains(&n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_cards() {
        assert!(credit_card("4111 1111 1111 1111"));
        assert!(credit_card("5500-0000-0000-0004"));
        assert!(credit_card("378282246310005"));
        assert!(!credit_card("4111 1111 1111 1112"));
        // An order number: Luhn-valid by chance is still refused for its first digit.
        assert!(!credit_card("1000000000000007"));
        assert!(!credit_card("4111"));
    }

    #[test]
    fn iban_checksum() {
        assert!(iban("GB82 WEST 1234 5698 7654 32"));
        assert!(iban("DE89370400440532013000"));
        assert!(!iban("GB82 WEST 1234 5698 7654 33"));
        assert!(!iban("DE00370400440532013000"));
    }

    #[test]
    fn ssn_ranges() {
        assert!(ssn("123-45-6789"));
        assert!(!ssn("000-45-6789"));
        assert!(!ssn("666-45-6789"));
        assert!(!ssn("923-45-6789"));
        assert!(!ssn("123-00-6789"));
        assert!(!ssn("123-45-0000"));
    }

    #[test]
    fn ips() {
        assert!(ip_address("192.168.1.20"));
        assert!(ip_address("2001:db8::1"));
        assert!(!ip_address("999.1.1.1"));
    }
}

//! A minimal DER (ASN.1 Distinguished Encoding Rules) writer.
//!
//! Just enough to assemble an X.509 certificate by hand: the stand-in uses it
//! for SM2/SM3 certificates, which `rcgen` cannot produce. Every function
//! returns a complete TLV (tag, length, value) as a `Vec<u8>`.

use time::OffsetDateTime;

/// Universal tag numbers used by the writer.
const TAG_BOOLEAN: u8 = 0x01;
const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;

/// Encodes one TLV with the given tag byte.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        // Short form; `len < 0x80` so the cast is lossless.
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = &bytes[skip..];
        // At most size_of::<usize>() bytes, so this fits in the 7-bit count.
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// SEQUENCE of already-encoded elements.
pub(crate) fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(TAG_SEQUENCE, &parts.concat())
}

/// SET of already-encoded elements (callers pass them in DER order).
pub(crate) fn set(parts: &[&[u8]]) -> Vec<u8> {
    tlv(TAG_SET, &parts.concat())
}

/// Context-specific, constructed, explicitly tagged element `[n]`.
pub(crate) fn explicit(n: u8, inner: &[u8]) -> Vec<u8> {
    tlv(0xa0 | (n & 0x1f), inner)
}

/// BOOLEAN.
pub(crate) fn boolean(value: bool) -> Vec<u8> {
    tlv(TAG_BOOLEAN, &[if value { 0xff } else { 0x00 }])
}

/// Non-negative INTEGER from big-endian magnitude bytes.
pub(crate) fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let skip = magnitude.iter().take_while(|b| **b == 0).count();
    let trimmed = &magnitude[skip..];
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    match trimmed.first() {
        None => content.push(0),
        Some(first) if first & 0x80 != 0 => {
            content.push(0);
            content.extend_from_slice(trimmed);
        }
        Some(_) => content.extend_from_slice(trimmed),
    }
    tlv(TAG_INTEGER, &content)
}

/// Small non-negative INTEGER.
pub(crate) fn small_integer(value: u64) -> Vec<u8> {
    unsigned_integer(&value.to_be_bytes())
}

/// BIT STRING with no unused bits.
pub(crate) fn bit_string(bytes: &[u8]) -> Vec<u8> {
    bit_string_with_unused(bytes, 0)
}

/// BIT STRING whose last byte has `unused` padding bits.
pub(crate) fn bit_string_with_unused(bytes: &[u8], unused: u8) -> Vec<u8> {
    let mut content = Vec::with_capacity(bytes.len() + 1);
    content.push(unused & 0x07);
    content.extend_from_slice(bytes);
    tlv(TAG_BIT_STRING, &content)
}

/// OCTET STRING.
pub(crate) fn octet_string(bytes: &[u8]) -> Vec<u8> {
    tlv(TAG_OCTET_STRING, bytes)
}

/// UTF8String.
pub(crate) fn utf8_string(s: &str) -> Vec<u8> {
    tlv(TAG_UTF8_STRING, s.as_bytes())
}

/// OBJECT IDENTIFIER from its arcs. The first two arcs must follow X.660
/// (first in 0..=2, second < 40 unless the first is 2).
pub(crate) fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut content = Vec::new();
    let (first, second) = match arcs {
        [a, b, ..] => (*a, *b),
        [a] => (*a, 0),
        [] => (0, 0),
    };
    push_base128(&mut content, first * 40 + second);
    for arc in arcs.iter().skip(2) {
        push_base128(&mut content, *arc);
    }
    tlv(TAG_OID, &content)
}

fn push_base128(out: &mut Vec<u8>, mut value: u64) {
    let mut groups = [0u8; 10];
    let mut n = 0;
    loop {
        // Masked to 7 bits, so the cast is lossless.
        groups[n] = (value & 0x7f) as u8;
        n += 1;
        value >>= 7;
        if value == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        let continuation = if i == 0 { 0 } else { 0x80 };
        out.push(groups[i] | continuation);
    }
}

/// X.509 `Time`: UTCTime for years 1950..=2049, GeneralizedTime otherwise
/// (RFC 5280 §4.1.2.5).
pub(crate) fn x509_time(t: OffsetDateTime) -> Vec<u8> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let year = t.year();
    let rest = format!(
        "{:02}{:02}{:02}{:02}{:02}Z",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if (1950..2050).contains(&year) {
        let s = format!("{:02}{rest}", year.rem_euclid(100));
        tlv(TAG_UTC_TIME, s.as_bytes())
    } else {
        let s = format!("{year:04}{rest}");
        tlv(TAG_GENERALIZED_TIME, s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn lengths_use_short_and_long_form() {
        assert_eq!(tlv(0x04, &[1, 2]), vec![0x04, 0x02, 1, 2]);
        let long = tlv(0x04, &[0u8; 200]);
        assert_eq!(&long[..3], &[0x04, 0x81, 200]);
        let longer = tlv(0x04, &[0u8; 300]);
        assert_eq!(&longer[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(small_integer(0), vec![0x02, 0x01, 0x00]);
        assert_eq!(small_integer(2), vec![0x02, 0x01, 0x02]);
        assert_eq!(
            unsigned_integer(&[0, 0, 0x80]),
            vec![0x02, 0x02, 0x00, 0x80]
        );
    }

    #[test]
    fn oids_encode_like_the_standard_examples() {
        // 1.2.840.10045.2.1 (id-ecPublicKey)
        assert_eq!(
            oid(&[1, 2, 840, 10045, 2, 1]),
            vec![0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]
        );
        // 1.2.156.10197.1.501 (SM2-with-SM3)
        assert_eq!(
            oid(&[1, 2, 156, 10197, 1, 501]),
            vec![0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x83, 0x75]
        );
    }

    #[test]
    fn times_switch_to_generalized_in_2050() {
        assert_eq!(
            x509_time(datetime!(2026-11-28 05:06:07 UTC)),
            tlv(0x17, b"261128050607Z")
        );
        assert_eq!(
            x509_time(datetime!(2050-01-02 03:04:05 UTC)),
            tlv(0x18, b"20500102030405Z")
        );
    }
}

//! File names as a record stores them: a reversible, printable escaping of the raw bytes.
//!
//! A record's `path` is a UTF-8 string (docs/FORMAT.md), but a Unix file name is any bytes but
//! `/` and NUL. A lossy conversion would store `a\xe9.JPEG` and `a\xe8.JPEG` both as
//! `a\u{FFFD}.JPEG`, so `extract --path` could return either one; and a raw newline in a name
//! would print as a forged line in the skip summary. So names are escaped:
//!
//! - a byte that is not part of valid UTF-8 becomes `\xHH` (two lowercase hex digits);
//! - so do the bytes of a control character (C0, DEL and C1: newline, tab, escape, …);
//! - a backslash becomes `\\`, so that a name that holds `\x` literally stays distinct;
//! - everything else (all printable text, in any script) is stored as it is.
//!
//! ImageNet's names need no escaping, so their stored paths are unchanged. [`unescape_name`]
//! gives the raw bytes back.

/// The stored, printable form of a file name's raw bytes (see the module docs).
pub fn escape_name(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else if c.is_control() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    push_hex(&mut out, b);
                }
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            push_hex(&mut out, b);
        }
    }
    out
}

fn push_hex(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\x");
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

/// The raw bytes of a name stored by [`escape_name`], or `None` when `stored` holds a backslash
/// that is not one of its escapes.
pub fn unescape_name(stored: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(stored.len());
    let mut bytes = stored.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next()? {
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hi = hex_value(bytes.next()?)?;
                let lo = hex_value(bytes.next()?)?;
                out.push(hi << 4 | lo);
            }
            _ => return None,
        }
    }
    Some(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `text` with its control characters escaped as `\xHH`, for one line of a report: a reason or
/// path can then never start a line of its own. Backslashes are left as they are (this is for
/// reading, not for reversing).
pub fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                push_hex(&mut out, b);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_names_are_stored_as_they_are() {
        for name in ["n01440764_10026.JPEG", "café.jpg", "猫.png", "a b (1).JPEG"] {
            assert_eq!(escape_name(name.as_bytes()), name);
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_stay_distinct() {
        assert_eq!(escape_name(b"a\xe9.JPEG"), "a\\xe9.JPEG");
        assert_eq!(escape_name(b"a\xe8.JPEG"), "a\\xe8.JPEG");
        // A name that holds the escape literally is not confused with the byte.
        assert_eq!(escape_name(b"a\\xe9.JPEG"), "a\\\\xe9.JPEG");
        // A truncated multi-byte sequence, then a valid one.
        assert_eq!(escape_name("\u{e9}".as_bytes()), "\u{e9}");
        assert_eq!(escape_name(b"\xc3\xc3\xa9"), "\\xc3\u{e9}");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_name(b"bad\nforged.JPEG"), "bad\\x0aforged.JPEG");
        assert_eq!(escape_name(b"\t\x1b[31m\x7f"), "\\x09\\x1b[31m\\x7f");
        // C1 controls (e.g. U+009B, a one-character CSI on some terminals): each UTF-8 byte.
        assert_eq!(escape_name("x\u{9b}y".as_bytes()), "x\\xc2\\x9by");
        assert_eq!(
            escape_controls("line\nnext\u{9b}"),
            "line\\x0anext\\xc2\\x9b"
        );
        assert_eq!(escape_controls("C:\\plain"), "C:\\plain");
    }

    #[test]
    fn stray_backslashes_do_not_unescape() {
        for bad in ["a\\", "a\\q", "a\\x", "a\\x4", "a\\xg0"] {
            assert_eq!(unescape_name(bad), None, "{bad:?}");
        }
        assert_eq!(unescape_name("A\\x41\\x0A").unwrap(), b"AA\n");
    }

    proptest! {
        #[test]
        fn escaping_is_reversible_and_printable(raw in proptest::collection::vec(any::<u8>(), 0..40)) {
            let stored = escape_name(&raw);
            prop_assert_eq!(unescape_name(&stored), Some(raw));
            prop_assert!(!stored.chars().any(char::is_control), "{:?}", stored);
        }
    }
}

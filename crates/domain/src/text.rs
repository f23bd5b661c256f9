//! What a name shown to other people may contain: no control characters, and none of
//! the invisible formatting characters that reorder or hide text (bidirectional
//! overrides and isolates, zero-width spaces, word joiners, byte-order marks), which
//! would let a name or tenant name pose as something else in an email or a list.
//! Zero-width joiners and non-joiners stay: scripts and emoji need them.

/// Whether `c` may not appear in a displayed name.
pub fn is_hidden_or_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                // Line and paragraph separators: a line break in a subject or a list.
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// Whether a name shows nothing: only white space and joiners (which are allowed
/// between visible characters, not alone).
pub fn is_blank(name: &str) -> bool {
    name.chars()
        .all(|c| c.is_whitespace() || c == '\u{200C}' || c == '\u{200D}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reordering_and_invisible_characters_are_refused_joiners_kept() {
        for c in [
            '\n', '\u{7}', '\u{202E}', '\u{2066}', '\u{200B}', '\u{FEFF}', '\u{200F}', '\u{2028}',
            '\u{2029}',
        ] {
            assert!(is_hidden_or_control(c), "{:?}", c);
        }
        for c in ['a', 'é', 'ß', '\u{200C}', '\u{200D}', '李', ' '] {
            assert!(!is_hidden_or_control(c), "{:?}", c);
        }
    }

    #[test]
    fn joiners_alone_are_blank() {
        assert!(is_blank("\u{200D}"));
        assert!(is_blank(" \u{200C}\u{200D} "));
        assert!(is_blank(""));
        assert!(!is_blank("a\u{200D}b"));
    }
}

//! Text from outside (a request path, a file's bytes in an error, an error chain that repeats its
//! input) kept to a bounded length before it is logged or shown.

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` if it has at most `max` bytes, else its first `max` bytes and how many were left out.
pub fn bounded(s: &str, max: usize) -> String {
    let kept = truncate(s, max);
    if kept.len() == s.len() {
        return s.to_owned();
    }
    format!("{kept}... ({} more bytes)", s.len() - kept.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_character_boundaries_and_says_how_much_was_left_out() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(bounded("abc", 3), "abc");
        assert_eq!(bounded("abcdef", 2), "ab... (4 more bytes)");
    }
}

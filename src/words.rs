//! Counts in English, for every message a person reads: "1 move",
//! "2 moves", "1 policy", "3 policies".

/// `n` and the noun, singular for exactly one.
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        return format!("1 {noun}");
    }
    match noun.strip_suffix('y') {
        // A consonant before the y: policy -> policies (not day -> days).
        Some(stem) if !stem.ends_with(['a', 'e', 'i', 'o', 'u']) => format!("{n} {stem}ies"),
        _ if noun.ends_with('s') => format!("{n} {noun}es"),
        _ => format!("{n} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(count(1u32, "move"), "1 move");
        assert_eq!(count(0u32, "move"), "0 moves");
        assert_eq!(count(2u32, "task"), "2 tasks");
        assert_eq!(count(1u32, "policy"), "1 policy");
        assert_eq!(count(3u32, "policy"), "3 policies");
        assert_eq!(count(2u32, "day"), "2 days");
        assert_eq!(count(2u32, "alias"), "2 aliases");
        assert_eq!(count(2u64, "stop"), "2 stops");
    }
}

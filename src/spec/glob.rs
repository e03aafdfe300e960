//! Service name patterns (`api-*`, `web-?`): matching, and deciding whether
//! two patterns can match a common name, which is how overlapping
//! `serviceSelector`s are found before any cluster is read.
//!
//! Only `*` (any run of characters) and `?` (one character) are special; ECS
//! service names are `[A-Za-z0-9_-]`, so no escaping is needed.

use std::collections::{HashMap, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
}

/// A compiled name pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    tokens: Vec<Token>,
}

impl Glob {
    /// Compiles a pattern. Characters that cannot appear in an ECS service
    /// name are rejected so a typo (`api-[0-9]`) is not silently literal.
    pub fn new(text: &str) -> Result<Glob, String> {
        if text.is_empty() {
            return Err("the pattern is empty".to_owned());
        }
        let mut tokens = Vec::with_capacity(text.len());
        for c in text.chars() {
            let token = match c {
                '*' => Token::AnyRun,
                '?' => Token::AnyOne,
                c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => Token::Literal(c),
                other => {
                    return Err(format!(
                        "`{other}` cannot appear in an ECS service name; patterns use letters, digits, `-`, `_`, `*` and `?`"
                    ));
                }
            };
            // `**` is the same as `*`; collapsing keeps the automaton small.
            if token == Token::AnyRun && tokens.last() == Some(&Token::AnyRun) {
                continue;
            }
            tokens.push(token);
        }
        Ok(Glob {
            text: text.to_owned(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        // Classic two-pointer wildcard match with backtracking to the last `*`.
        let (mut p, mut n) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.tokens.get(p) {
                Some(Token::Literal(c)) if *c == name[n] => (p, n) = (p + 1, n + 1),
                Some(Token::AnyOne) => (p, n) = (p + 1, n + 1),
                Some(Token::AnyRun) => {
                    star = Some((p, n));
                    p += 1;
                }
                _ => match star {
                    Some((sp, sn)) => {
                        star = Some((sp, sn + 1));
                        (p, n) = (sp + 1, sn + 1);
                    }
                    None => return false,
                },
            }
        }
        self.tokens[p..].iter().all(|t| *t == Token::AnyRun)
    }

    /// A name both patterns match, if there is one (the shortest such name).
    /// Breadth-first search over the product of the two patterns' automata.
    pub fn common_match(&self, other: &Glob) -> Option<String> {
        let (a, b) = (&self.tokens, &other.tokens);
        // A state is a position in each pattern; `*` can be skipped for free.
        let closure = |(i, j): (usize, usize)| {
            let mut out = vec![];
            let mut i2 = i;
            loop {
                let mut j2 = j;
                loop {
                    out.push((i2, j2));
                    if b.get(j2) == Some(&Token::AnyRun) {
                        j2 += 1;
                    } else {
                        break;
                    }
                }
                if a.get(i2) == Some(&Token::AnyRun) {
                    i2 += 1;
                } else {
                    break;
                }
            }
            out
        };
        // Each side's possible steps on one character: (char it needs, next position).
        let steps = |tokens: &[Token], i: usize| -> Vec<(Option<char>, usize)> {
            match tokens.get(i) {
                Some(Token::Literal(c)) => vec![(Some(*c), i + 1)],
                Some(Token::AnyOne) => vec![(None, i + 1)],
                Some(Token::AnyRun) => vec![(None, i)],
                None => vec![],
            }
        };
        // How each state was first reached: from which state, reading which character.
        type State = (usize, usize);
        let mut parent: HashMap<State, Option<(State, char)>> = HashMap::new();
        let mut queue = VecDeque::new();
        for s in closure((0, 0)) {
            parent.entry(s).or_insert(None);
            queue.push_back(s);
        }
        while let Some(state) = queue.pop_front() {
            if state == (a.len(), b.len()) {
                let mut name = vec![];
                let mut cur = state;
                while let Some(Some((prev, c))) = parent.get(&cur) {
                    name.push(*c);
                    cur = *prev;
                }
                name.reverse();
                return Some(name.into_iter().collect());
            }
            for (ca, na) in steps(a, state.0) {
                for (cb, nb) in steps(b, state.1) {
                    let c = match (ca, cb) {
                        (Some(x), Some(y)) if x != y => continue,
                        (Some(x), _) | (None, Some(x)) => x,
                        (None, None) => 'x',
                    };
                    for next in closure((na, nb)) {
                        if let std::collections::hash_map::Entry::Vacant(e) = parent.entry(next) {
                            e.insert(Some((state, c)));
                            queue.push_back(next);
                        }
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn g(p: &str) -> Glob {
        Glob::new(p).unwrap()
    }

    #[test]
    fn matching_handles_literals_and_both_wildcards() {
        assert!(g("web").matches("web"));
        assert!(!g("web").matches("web2"));
        assert!(g("api-*").matches("api-"));
        assert!(g("api-*").matches("api-orders"));
        assert!(!g("api-*").matches("web-api-orders"));
        assert!(g("*-api-*").matches("x-api-y-api-z"));
        assert!(g("web-?").matches("web-1"));
        assert!(!g("web-?").matches("web-12"));
        assert!(g("*").matches(""));
    }

    #[test]
    fn rejects_characters_no_service_name_has() {
        assert!(Glob::new("api-[0-9]").is_err());
        assert!(Glob::new("").is_err());
        assert!(Glob::new("a b").is_err());
    }

    #[test]
    fn common_match_finds_a_witness_or_proves_none() {
        assert_eq!(
            g("api-*").common_match(&g("*-orders")).as_deref(),
            Some("api-orders")
        );
        assert_eq!(g("api-*").common_match(&g("web-*")), None);
        assert_eq!(g("a?c").common_match(&g("*b*")).as_deref(), Some("abc"));
        assert_eq!(g("web").common_match(&g("web")).as_deref(), Some("web"));
        assert_eq!(g("ab").common_match(&g("a??")), None);
    }

    fn pattern() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![Just('a'), Just('b'), Just('*'), Just('?')],
            1..6,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    proptest! {
        // The witness really matches both, and when there is none, no short
        // name over the same alphabet matches both either.
        #[test]
        fn common_match_agrees_with_brute_force(p in pattern(), q in pattern()) {
            let (gp, gq) = (g(&p), g(&q));
            match gp.common_match(&gq) {
                Some(w) => prop_assert!(gp.matches(&w) && gq.matches(&w), "{w}"),
                None => {
                    let mut names = vec![String::new()];
                    for _ in 0..7 {
                        names = names.iter().flat_map(|n| ["a", "b", "x"].map(|c| format!("{n}{c}"))).chain(names.clone()).collect();
                        names.sort();
                        names.dedup();
                    }
                    for n in names {
                        prop_assert!(!(gp.matches(&n) && gq.matches(&n)), "{n} matches both {p} and {q}");
                    }
                }
            }
        }
    }
}

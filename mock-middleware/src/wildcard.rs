//! Wildcard patterns as OX's `com.openexchange.push.allowedClients` uses them (`*` any run of
//! characters, `?` one), shared by the subscribe gate, the permanent listeners and the push
//! pipeline.

/// Parses OX's quoted, comma-separated wildcard list (`"USM-EAS*", "open-xchange-mailapp"`).
pub fn parse_client_patterns(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().trim_matches('"').trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `*` matches any run of characters, `?` one character; everything else literally.
pub fn wildcard_match(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// True when `patterns` is empty (OX: every client allowed) or one of them matches `client`.
pub fn client_allowed(patterns: &[String], client: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| wildcard_match(p, client))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_ALLOWED_CLIENTS;

    #[test]
    fn client_patterns_and_wildcards() {
        let pats = parse_client_patterns(DEFAULT_ALLOWED_CLIENTS);
        assert_eq!(pats.len(), 4);
        assert!(wildcard_match(
            "open-xchange-mobile-api-facade*",
            "open-xchange-mobile-api-facade-ios"
        ));
        assert!(wildcard_match("USM-EAS*", "USM-EAS"));
        assert!(!wildcard_match(
            "open-xchange-mailapp",
            "open-xchange-mailapp2"
        ));
        assert!(wildcard_match("a?c*", "abcdef"));
        assert!(!wildcard_match("a?c", "ac"));
    }

    #[test]
    fn empty_list_allows_everyone() {
        assert!(client_allowed(&[], "anything"));
        assert!(!client_allowed(&["a*".to_string()], "b"));
    }
}

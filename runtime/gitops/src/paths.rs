//! The `paths:` filter of a git trigger: git-style globs over `/`-separated repository paths.
//!
//! - `*` matches within one path segment, `?` one character of it;
//! - `**` as a whole segment matches any number of segments (`adc/**`, `**/*.yaml`);
//! - a pattern without wildcards names a file or a directory (`adc` matches `adc/a.yaml`).
//!
//! An empty filter matches every path.

/// A list of patterns; a path matches when any pattern does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathFilter {
    patterns: Vec<String>,
}

impl PathFilter {
    /// Patterns as written; a leading `./` or `/` and trailing `/` are ignored.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> PathFilter {
        PathFilter {
            patterns: patterns
                .iter()
                .map(|p| {
                    let p = p.as_ref().trim();
                    let p = p.strip_prefix("./").unwrap_or(p);
                    p.trim_matches('/').to_string()
                })
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }

    /// Whether `path` (relative to the repository root) is selected.
    pub fn matches(&self, path: &str) -> bool {
        if self.patterns.is_empty() {
            return true;
        }
        let segs: Vec<&str> = path.split('/').collect();
        self.patterns.iter().any(|p| {
            let pat: Vec<&str> = p.split('/').collect();
            if p.contains(['*', '?']) {
                glob_segments(&pat, &segs)
            } else {
                // A plain path names the file itself or everything below the directory.
                segs.len() >= pat.len() && segs[..pat.len()] == pat[..]
            }
        })
    }

    /// Whether any pattern was given.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

fn glob_segments(pat: &[&str], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| glob_segments(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            Some((seg, tail)) => {
                glob_one(first.as_bytes(), seg.as_bytes()) && glob_segments(rest, tail)
            }
            None => false,
        },
    }
}

/// `*` and `?` within one segment (iterative, with one backtrack point: linear in practice).
fn glob_one(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == s[i]) {
            p += 1;
            i += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, i));
            p += 1;
        } else if let Some((sp, si)) = star {
            p = sp + 1;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::PathFilter;

    #[test]
    fn globs_and_directories() {
        let f = PathFilter::new(&["adc/**", "gateway/*.yaml", "./single.json", "dir/"]);
        for yes in [
            "adc/a.yaml",
            "adc/deep/b.yml",
            "gateway/x.yaml",
            "single.json",
            "dir/a",
            "dir/b/c",
        ] {
            assert!(f.matches(yes), "{yes} should match");
        }
        for no in [
            "adcx/a.yaml",
            "gateway/deep/x.yaml",
            "gateway/x.json",
            "single.json.bak",
            "README.md",
            "directory/a",
        ] {
            assert!(!f.matches(no), "{no} should not match");
        }
    }

    #[test]
    fn double_star_anywhere_and_empty_filter() {
        let f = PathFilter::new(&["**/*.yaml"]);
        assert!(f.matches("a.yaml"));
        assert!(f.matches("x/y/z.yaml"));
        assert!(!f.matches("x/y/z.yml"));
        let all = PathFilter::new::<&str>(&[]);
        assert!(all.is_empty() && all.matches("anything/at/all"));
        let q = PathFilter::new(&["v?/*-prod.*"]);
        assert!(q.matches("v1/eu-prod.yaml"));
        assert!(!q.matches("v10/eu-prod.yaml"));
    }
}

//! A bucket's keys in S3's order, and its listings by S3's rules.
//!
//! Object names are encrypted per component, so the coordinator can neither order keys by
//! their plaintext nor match a prefix inside a component. The gateway decrypts a bucket's
//! names once (one listing call) and keeps them here, ordered by their UTF-8 bytes as S3
//! orders them; its own writes update the index as they commit. A page is then a range
//! scan: `O(log n + page)`, with each common prefix skipped in one seek.

use std::collections::BTreeMap;
use std::ops::Bound;

use scatter_proto::api::AttributesTag;

use crate::attrs::Attributes;

/// What a listing shows of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Plaintext bytes.
    pub size: u64,
    /// Unix time of the put.
    pub modified: u64,
    /// ETag, content type, user metadata.
    pub attrs: Attributes,
    /// The catalog's version number.
    pub version: u64,
    /// The tag of its sealed attributes: what a write conditional on this version names.
    pub tag: Option<AttributesTag>,
}

/// The keys of one bucket.
#[derive(Debug, Default)]
pub struct Index {
    keys: BTreeMap<Vec<u8>, Entry>,
}

/// A listing request, in S3's terms.
#[derive(Debug, Clone, Default)]
pub struct Query<'a> {
    /// Only keys starting with this.
    pub prefix: &'a str,
    /// Group keys by what follows the prefix up to the first delimiter.
    pub delimiter: Option<&'a str>,
    /// Start after this key (`start-after`, `marker`, or a continuation token's key).
    pub after: Option<&'a str>,
    /// At most this many keys and common prefixes (S3 caps it at 1000).
    pub max: usize,
}

/// One page of a listing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// Keys with their entries, in order.
    pub objects: Vec<(String, Entry)>,
    /// Common prefixes, in order.
    pub prefixes: Vec<String>,
    /// More follow: continue after [`Page::last`].
    pub truncated: bool,
    /// The last key or common prefix of this page.
    pub last: Option<String>,
}

impl Index {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the bucket has no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The entry of `key`.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.keys.get(key.as_bytes())
    }

    /// Records `key` (a put, copy or completed upload), replacing what was recorded. Which of
    /// two writes of a key is the later is the catalog's to say (the gateway's `record`):
    /// version numbers start again at 1 once every version of a name is deleted.
    pub fn insert(&mut self, key: &str, entry: Entry) {
        self.keys.insert(key.as_bytes().to_vec(), entry);
    }

    /// Forgets `key` (a delete).
    pub fn remove(&mut self, key: &str) -> Option<Entry> {
        self.keys.remove(key.as_bytes())
    }

    /// One page of the listing `q` asks for.
    pub fn list(&self, q: &Query<'_>) -> Page {
        let mut page = Page::default();
        let prefix = q.prefix.as_bytes();
        let delimiter = q.delimiter.filter(|d| !d.is_empty()).map(str::as_bytes);
        // Start at the prefix, or after `after` if that is further on.
        let mut from: Bound<Vec<u8>> = Bound::Included(prefix.to_vec());
        if let Some(after) = q.after.map(str::as_bytes).filter(|a| *a >= prefix) {
            from = Bound::Excluded(after.to_vec());
        }
        // A common prefix `after` names: skip all of it, as S3 does after a page ending in one.
        if let (Some(d), Bound::Excluded(a)) = (delimiter, &from) {
            if a.len() > prefix.len() && a.starts_with(prefix) && a.ends_with(d) {
                from = Bound::Excluded(past(a));
            }
        }
        if q.max == 0 {
            return page;
        }
        loop {
            let next = self.keys.range::<Vec<u8>, _>((from.clone(), Bound::Unbounded)).next();
            let Some((key, entry)) = next else { break };
            if !key.starts_with(prefix) {
                break;
            }
            if page.objects.len() + page.prefixes.len() == q.max {
                page.truncated = true;
                break;
            }
            let rest = &key[prefix.len()..];
            let grouped = delimiter.and_then(|d| find(rest, d).map(|i| prefix.len() + i + d.len()));
            match grouped {
                Some(end) => {
                    let common = key[..end].to_vec();
                    from = Bound::Excluded(past(&common));
                    let text = String::from_utf8_lossy(&common).into_owned();
                    page.last = Some(text.clone());
                    page.prefixes.push(text);
                }
                None => {
                    let text = String::from_utf8_lossy(key).into_owned();
                    page.last = Some(text.clone());
                    page.objects.push((text, entry.clone()));
                    from = Bound::Excluded(key.clone());
                }
            }
        }
        page
    }
}

/// A bound just past every key starting with `prefix`: UTF-8 never has a 0xFF byte, so
/// `prefix` + 0xFF sorts after all of them and before anything else that sorts after it.
fn past(prefix: &[u8]) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.push(0xFF);
    v
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn entry(n: u64) -> Entry {
        Entry { size: n, modified: n, attrs: Attributes::default(), version: 1, tag: None }
    }

    /// S3's rules, the slow way: every key in order, grouped, then cut to a page.
    fn reference(keys: &[String], q: &Query<'_>) -> (Vec<String>, Vec<String>, bool) {
        let mut sorted: Vec<&String> = keys.iter().collect();
        sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        sorted.dedup();
        let mut items: Vec<(bool, String)> = Vec::new();
        for k in sorted {
            if !k.starts_with(q.prefix) {
                continue;
            }
            if let Some(a) = q.after {
                // Keys after `after`; and past all of a common prefix `after` names.
                let names_prefix = q.delimiter.is_some_and(|d| {
                    !d.is_empty() && a.len() > q.prefix.len() && a.starts_with(q.prefix) && a.ends_with(d)
                });
                if k.as_bytes() <= a.as_bytes() || (names_prefix && k.starts_with(a)) {
                    continue;
                }
            }
            let item = match q.delimiter.filter(|d| !d.is_empty()) {
                Some(d) => match k[q.prefix.len()..].find(d) {
                    Some(i) => (true, k[..q.prefix.len() + i + d.len()].to_owned()),
                    None => (false, k.clone()),
                },
                None => (false, k.clone()),
            };
            if items.last() != Some(&item) {
                items.push(item);
            }
        }
        let truncated = items.len() > q.max;
        items.truncate(q.max);
        let objects = items.iter().filter(|(p, _)| !p).map(|(_, s)| s.clone()).collect();
        let prefixes = items.iter().filter(|(p, _)| *p).map(|(_, s)| s.clone()).collect();
        (objects, prefixes, truncated)
    }

    fn random_keys(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<String> {
        let alphabet = ["a", "b", "/", "-", "é", "ab/", "z", "/", "%", "0"];
        (0..n)
            .map(|_| {
                let len = rng.gen_range(1..7);
                (0..len).map(|_| alphabet[rng.gen_range(0..alphabet.len())]).collect()
            })
            .collect()
    }

    #[test]
    fn pages_match_s3s_rules_for_random_buckets_and_queries() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..300 {
            let n = rng.gen_range(0..60);
            let keys = random_keys(&mut rng, n);
            let mut index = Index::default();
            for (i, k) in keys.iter().enumerate() {
                index.insert(k, entry(i as u64));
            }
            let prefixes = ["", "a", "ab", "a/", "é", "b/a"];
            let delimiters = [None, Some("/"), Some("b"), Some("ab/"), Some("")];
            let prefix = prefixes[rng.gen_range(0..prefixes.len())];
            let delimiter = delimiters[rng.gen_range(0..delimiters.len())];
            let max = rng.gen_range(1..8);
            // Walk every page, continuing after each page's last item, as clients do.
            let mut after: Option<String> = if rng.gen_bool(0.3) { keys.first().cloned() } else { None };
            let mut pages = 0;
            loop {
                let q = Query { prefix, delimiter, after: after.as_deref(), max };
                let page = index.list(&q);
                let (objects, common, truncated) = reference(&keys, &q);
                let got: Vec<String> = page.objects.iter().map(|(k, _)| k.clone()).collect();
                assert_eq!(
                    (got, page.prefixes.clone(), page.truncated),
                    (objects, common, truncated),
                    "round {round}: {q:?}"
                );
                if !page.truncated {
                    break;
                }
                after = page.last.clone();
                pages += 1;
                assert!(pages < 100, "the listing does not end");
            }
        }
    }

    #[test]
    fn a_listing_follows_byte_order_and_skips_a_common_prefix_in_one_step() {
        let mut index = Index::default();
        for (i, k) in ["b", "a/1", "a/2", "A", "é", "z"].iter().enumerate() {
            index.insert(k, entry(i as u64));
        }
        let page = index.list(&Query { delimiter: Some("/"), max: 1000, ..Default::default() });
        let keys: Vec<&str> = page.objects.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["A", "b", "z", "é"]);
        assert_eq!(page.prefixes, ["a/"]);
        // A page that ends on a common prefix continues past everything under it.
        let first = index.list(&Query { delimiter: Some("/"), max: 2, ..Default::default() });
        assert_eq!(first.last.as_deref(), Some("a/"));
        let next = index.list(&Query { delimiter: Some("/"), after: Some("a/"), max: 2, ..Default::default() });
        assert_eq!(next.objects.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["b", "z"]);
        assert!(index.list(&Query { max: 0, ..Default::default() }).objects.is_empty());
    }
}

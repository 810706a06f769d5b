//! Where S3 buckets, objects and multipart uploads live among a profile's object names.
//!
//! Every S3 name becomes an ordinary object name under one of three roots, so it is
//! encrypted like any other (per `/` component, see `scatter_core::names`):
//!
//! ```text
//! .s3-buckets/BUCKET                  a bucket (an empty object; its attributes say when)
//! .s3-objects/BUCKET/ESCAPED-KEY      an object: the key is one component, `%` and `/` escaped
//! .s3-uploads/BUCKET/UPLOAD           a multipart upload in progress (key, metadata)
//! .s3-uploads/BUCKET/UPLOAD/NNNNN     its part NNNNN
//! ```
//!
//! A key is kept as one component so that any key S3 allows (empty components, `.`, `..`,
//! trailing `/`) is stored as it is and its bucket's objects are one encrypted prefix.

/// The root of bucket markers.
pub const BUCKETS: &str = ".s3-buckets";
/// The root of objects.
pub const OBJECTS: &str = ".s3-objects";
/// The root of multipart uploads in progress.
pub const UPLOADS: &str = ".s3-uploads";

/// The longest key S3 allows, in bytes.
pub const MAX_KEY: usize = 1024;

/// Why a bucket name is refused, in S3's words.
pub fn check_bucket(name: &str) -> Result<(), &'static str> {
    let ok_len = (3..=63).contains(&name.len());
    let ok_chars = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ok_len || !ok_chars || !ends(name.bytes().next()) || !ends(name.bytes().last()) || name.contains("..") {
        return Err("bucket names are 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit");
    }
    Ok(())
}

/// Why a key is refused.
pub fn check_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err("object keys are 1 to 1024 bytes");
    }
    Ok(())
}

/// The object name of a bucket's marker.
pub fn bucket(bucket: &str) -> String {
    format!("{BUCKETS}/{bucket}")
}

/// The object name of `key` in `bucket`.
pub fn object(bucket: &str, key: &str) -> String {
    format!("{OBJECTS}/{bucket}/{}", escape(key))
}

/// The folder (name prefix, without its trailing `/`) of a bucket's objects.
pub fn objects_of(bucket: &str) -> String {
    format!("{OBJECTS}/{bucket}")
}

/// The object name of a multipart upload's marker.
pub fn upload(bucket: &str, upload: &str) -> String {
    format!("{UPLOADS}/{bucket}/{upload}")
}

/// The folder of a bucket's multipart uploads.
pub fn uploads_of(bucket: &str) -> String {
    format!("{UPLOADS}/{bucket}")
}

/// The object name of part `number` of a multipart upload.
pub fn part(bucket: &str, upload_id: &str, number: u16) -> String {
    format!("{}/{number:05}", upload(bucket, upload_id))
}

/// What a decrypted object name is, for the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// A bucket marker.
    Bucket(String),
    /// An object: bucket, key.
    Object(String, String),
    /// A multipart upload's marker: bucket, upload id.
    Upload(String, String),
    /// A part: bucket, upload id, part number.
    Part(String, String, u16),
}

/// Parses a decrypted object name; `None` for names that are not the gateway's.
pub fn parse(name: &str) -> Option<Named> {
    let mut it = name.splitn(3, '/');
    let (root, bucket, rest) = (it.next()?, it.next()?, it.next());
    check_bucket(bucket).ok()?;
    let bucket = bucket.to_owned();
    match (root, rest) {
        (BUCKETS, None) => Some(Named::Bucket(bucket)),
        (OBJECTS, Some(key)) => unescape(key).map(|k| Named::Object(bucket, k)),
        (UPLOADS, Some(rest)) => match rest.split_once('/') {
            None => check_upload_id(rest).ok().map(|()| Named::Upload(bucket, rest.to_owned())),
            Some((id, n)) if n.len() == 5 && n.bytes().all(|b| b.is_ascii_digit()) => {
                check_upload_id(id).ok()?;
                n.parse().ok().map(|n| Named::Part(bucket, id.to_owned(), n))
            }
            Some(_) => None,
        },
        _ => None,
    }
}

/// Upload ids are 32 lowercase hex digits (the gateway makes them).
pub fn check_upload_id(id: &str) -> Result<(), &'static str> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err("the upload id is not one this gateway made")
    }
}

/// A new upload id.
pub fn new_upload_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn escape(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("%25") => out.push('%'),
            Some("%2F") => out.push('/'),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    if rest.contains('/') {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_key_round_trips_as_one_component() {
        for key in ["a", "a/b", "dir/", "/lead", "a//b", ".", "..", "../x", "100%", "%2F", "ünï/名前", " "] {
            let name = object("bkt", key);
            assert_eq!(name.matches('/').count(), 2, "{key:?} -> {name}");
            assert_eq!(parse(&name), Some(Named::Object("bkt".into(), key.into())));
        }
    }

    #[test]
    fn names_parse_by_kind_and_foreign_names_do_not() {
        let id = new_upload_id();
        assert_eq!(parse(&bucket("my-bucket")), Some(Named::Bucket("my-bucket".into())));
        assert_eq!(parse(&upload("b12", &id)), Some(Named::Upload("b12".into(), id.clone())));
        assert_eq!(parse(&part("b12", &id, 7)), Some(Named::Part("b12".into(), id.clone(), 7)));
        for foreign in [
            "photos/cat.jpg",
            ".s3-objects/bkt",
            ".s3-objects/BAD/key",
            ".s3-objects/bkt/a%zz",
            ".s3-buckets/bkt/extra",
            ".s3-uploads/bkt/short",
            ".s3-uploads/bkt/00000000000000000000000000000000/1",
        ] {
            assert_eq!(parse(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn bucket_and_key_rules() {
        for ok in ["abc", "my.bucket-1", "a23456789012345678901234567890123456789012345678901234567890123"] {
            assert!(check_bucket(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "Abc", "-abc", "abc-", "a..b", "a_b", "", &"a".repeat(64)] {
            assert!(check_bucket(bad).is_err(), "{bad}");
        }
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(1025)).is_err());
        assert!(check_key(&"k".repeat(1024)).is_ok());
    }
}

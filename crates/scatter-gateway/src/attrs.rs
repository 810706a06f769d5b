//! What the gateway keeps of an S3 object besides its bytes: ETag, content type, user
//! metadata (and, for an upload in progress, its key). Sealed with the object's name
//! (`NameKey::seal_attributes`), so the coordinator stores them without reading them: an
//! MD5 it could read would fingerprint the plaintext.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The most bytes of user metadata (names and values) an object may carry, as S3 allows.
pub const MAX_USER_METADATA: usize = 2048;

/// The longest `Content-Type` kept: with the user metadata, the sealed attributes stay within
/// what the coordinator stores for a version.
pub const MAX_CONTENT_TYPE: usize = 1024;

/// An object version's attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes {
    /// The ETag, without quotes: the MD5 of the bytes in hex, or for a multipart upload the
    /// MD5 of its parts' MD5s followed by `-` and the number of parts.
    #[serde(default)]
    pub etag: String,
    /// `Content-Type` as given at upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `x-amz-meta-*` headers, by lower-case name without the prefix.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// For a multipart upload's marker: the key it will complete to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// For a multipart upload's marker: the access key that created it. A write-only key may
    /// abort its own uploads only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
}

/// Attributes that could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("an object's attributes are not in the gateway's format")]
pub struct BadAttributes;

impl Attributes {
    /// Serialises the attributes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses attributes (already authenticated by their seal; still checked).
    pub fn decode(bytes: &[u8]) -> Result<Self, BadAttributes> {
        let a: Attributes = serde_json::from_slice(bytes).map_err(|_| BadAttributes)?;
        if a.etag.len() > 64
            || a.user_metadata_len() > MAX_USER_METADATA * 2
            || a.content_type.as_ref().is_some_and(|c| c.len() > MAX_CONTENT_TYPE)
            || a.writer.as_ref().is_some_and(|w| w.len() > 128)
        {
            return Err(BadAttributes);
        }
        Ok(a)
    }

    /// Bytes of user metadata, as S3 counts them (names and values).
    pub fn user_metadata_len(&self) -> usize {
        self.metadata.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// The ETag as a header value: in quotes.
    pub fn quoted_etag(&self) -> String {
        format!("\"{}\"", self.etag)
    }
}

/// The ETag of a multipart upload: MD5 of the concatenated binary MD5s of its parts, `-N`.
/// `None` if a part's ETag is not an MD5 in hex.
pub fn multipart_etag(parts: &[&str]) -> Option<String> {
    use md5::Digest;
    let mut h = md5::Md5::new();
    for p in parts {
        let bin = hex::decode(p).ok().filter(|b| b.len() == 16)?;
        h.update(&bin);
    }
    Some(format!("{}-{}", hex::encode(h.finalize()), parts.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_and_junk_is_refused() {
        let mut a = Attributes { etag: "d41d8cd98f00b204e9800998ecf8427e".into(), ..Default::default() };
        a.content_type = Some("text/plain".into());
        a.metadata.insert("colour".into(), "blue".into());
        assert_eq!(Attributes::decode(&a.encode()).expect("decode"), a);
        assert!(Attributes::decode(b"not json").is_err());
        assert!(Attributes::decode(format!("{{\"etag\":\"{}\"}}", "e".repeat(65)).as_bytes()).is_err());
    }

    #[test]
    fn multipart_etag_is_md5_of_md5s() {
        // Two parts whose MD5s are those of "a" and "b"; their concatenation hashed.
        let a = "0cc175b9c0f1b6a831c399e269772661";
        let b = "92eb5ffee6ae2fec3ad71c777531578f";
        let etag = multipart_etag(&[a, b]).expect("etag");
        use md5::Digest;
        let mut cat = hex::decode(a).expect("hex");
        cat.extend(hex::decode(b).expect("hex"));
        assert_eq!(etag, format!("{}-2", hex::encode(md5::Md5::digest(&cat))));
        assert_eq!(multipart_etag(&["nothex"]), None);
    }
}

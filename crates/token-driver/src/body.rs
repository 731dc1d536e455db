//! Reading response bodies without anything unbounded in memory.

/// Reads at most `limit + 1` bytes, so the core can tell an oversized body (and report
/// [`token_core::Error::BodyTooLarge`]) without reading the rest.
pub fn read_capped(reader: impl std::io::Read, limit: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut body = Vec::with_capacity(limit.min(8 * 1024));
    reader.take(cap).read_to_end(&mut body)?;
    Ok(body)
}

/// Appends `chunk` to `body` up to `limit + 1` bytes; returns `false` once the cap is passed
/// (stop reading: the core reports the oversized body).
pub fn push_capped(body: &mut Vec<u8>, chunk: &[u8], limit: usize) -> bool {
    let room = limit.saturating_add(1).saturating_sub(body.len());
    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    body.len() <= limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_byte_past_the_limit_at_most() {
        let data = [7u8; 100];
        assert_eq!(read_capped(&data[..], 10).unwrap().len(), 11);
        assert_eq!(read_capped(&data[..], 100).unwrap().len(), 100);
        assert_eq!(read_capped(&data[..], 1000).unwrap().len(), 100);
        let mut body = Vec::new();
        assert!(push_capped(&mut body, &data[..6], 10));
        assert!(!push_capped(&mut body, &data[..6], 10));
        assert_eq!(body.len(), 11);
    }
}

//! What the integration tests share.

use std::convert::Infallible;

use h1p::pull::Source;

/// A source that gives its bytes in one read, then the end.
pub struct Once(pub Option<Vec<u8>>);

impl Source for Once {
    type Error = Infallible;

    fn read(&mut self, buf: &mut Vec<u8>, _max: usize) -> Result<usize, Infallible> {
        let data = self.0.take().unwrap_or_default();
        buf.extend_from_slice(&data);
        Ok(data.len())
    }
}

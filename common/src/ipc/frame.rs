//! Length-prefixed frames: a 4-byte big-endian length, then that many bytes of JSON.
//!
//! One codec for every protocol. A frame longer than the cap, a truncated frame or bytes that
//! are not the expected message are errors the caller answers or closes on; nothing here panics.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{Read, Write};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame accepted by default (1 MiB): far above any request, far below memory trouble.
pub const MAX_FRAME: usize = 1 << 20;

/// A frame that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer announced a frame above the cap.
    #[error("frame of {0} bytes exceeds the limit of {1} bytes")]
    TooLarge(usize, usize),
    /// The peer closed the connection in the middle of a frame.
    #[error("unexpected end of input inside a frame")]
    Truncated,
    /// The frame is not valid JSON for the expected message type.
    #[error("malformed message: {0}")]
    Decode(#[from] serde_json::Error),
    /// The call took longer than its time limit.
    #[error("timeout")]
    Timeout,
    /// The peer announced another protocol or version.
    #[error("unexpected protocol: wanted {wanted}, got {got}")]
    Protocol { wanted: String, got: String },
}

/// Encode one message as a frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(msg)?;
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len(), MAX_FRAME))?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn check_len(header: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > max { Err(FrameError::TooLarge(len, max)) } else { Ok(len) }
}

/// Read one frame; `Ok(None)` when the peer closed cleanly between frames.
pub async fn read_frame<T: DeserializeOwned, R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Option<T>, FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut header[got..]).await?;
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(FrameError::Truncated) };
        }
        got += n;
    }
    let len = check_len(header, max)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    Ok(Some(serde_json::from_slice(&body)?))
}

/// Write one frame and flush it.
pub async fn write_frame<T: Serialize, W: AsyncWrite + Unpin>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    w.write_all(&encode(msg)?).await?;
    w.flush().await?;
    Ok(())
}

/// Blocking [`read_frame`], for the master and the command-line programs.
pub fn read_frame_blocking<T: DeserializeOwned, R: Read>(r: &mut R, max: usize) -> Result<Option<T>, FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = match r.read(&mut header[got..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(FrameError::Timeout);
            }
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(FrameError::Truncated) };
        }
        got += n;
    }
    let len = check_len(header, max)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => FrameError::Timeout,
        _ => FrameError::Io(e),
    })?;
    Ok(Some(serde_json::from_slice(&body)?))
}

/// Blocking [`write_frame`].
pub fn write_frame_blocking<T: Serialize, W: Write>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    w.write_all(&encode(msg)?)?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Msg {
        A { n: u32 },
        B(String),
    }

    #[test]
    fn several_frames_partial_and_oversized() {
        let mut bytes = encode(&Msg::A { n: 1 }).unwrap();
        bytes.extend(encode(&Msg::B("x".into())).unwrap());
        let mut r = &bytes[..];
        assert_eq!(read_frame_blocking::<Msg, _>(&mut r, MAX_FRAME).unwrap(), Some(Msg::A { n: 1 }));
        assert_eq!(read_frame_blocking::<Msg, _>(&mut r, MAX_FRAME).unwrap(), Some(Msg::B("x".into())));
        assert_eq!(read_frame_blocking::<Msg, _>(&mut r, MAX_FRAME).unwrap(), None);

        let whole = encode(&Msg::A { n: 7 }).unwrap();
        for cut in 1..whole.len() {
            let mut r = &whole[..cut];
            assert!(matches!(read_frame_blocking::<Msg, _>(&mut r, MAX_FRAME), Err(FrameError::Truncated)), "cut {cut}");
        }
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0xff, b'{'];
        assert!(matches!(read_frame_blocking::<Msg, _>(&mut r, MAX_FRAME), Err(FrameError::TooLarge(_, _))));
        let mut garbage = 5u32.to_be_bytes().to_vec();
        garbage.extend(b"\0\xff{]x");
        let mut r = &garbage[..];
        assert!(matches!(read_frame_blocking::<Msg, _>(&mut r, MAX_FRAME), Err(FrameError::Decode(_))));
    }

    #[test]
    fn async_round_trip() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let (mut a, mut b) = tokio::io::duplex(64);
            let writer = async {
                write_frame(&mut a, &Msg::B("y".repeat(300))).await.unwrap();
                drop(a);
            };
            let reader = async {
                let got: Option<Msg> = read_frame(&mut b, MAX_FRAME).await.unwrap();
                assert_eq!(got, Some(Msg::B("y".repeat(300))));
                assert!(read_frame::<Msg, _>(&mut b, MAX_FRAME).await.unwrap().is_none());
            };
            tokio::join!(writer, reader);
        });
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut r = &bytes[..];
            let _ = read_frame_blocking::<Msg, _>(&mut r, 32);
        }

        #[test]
        fn strings_round_trip(s in ".*") {
            let bytes = encode(&Msg::B(s.clone())).unwrap();
            let mut r = &bytes[..];
            proptest::prop_assert_eq!(read_frame_blocking::<Msg, _>(&mut r, MAX_FRAME).unwrap(), Some(Msg::B(s)));
        }
    }
}

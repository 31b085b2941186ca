//! The framing and codec used on every socket: a 4-byte big-endian length, then the message as
//! compact MessagePack (rmp-serde).
//!
//! A message is serialised straight into the socket's write buffer behind a length placeholder,
//! so a read's bytes are copied once on the way out, not first into a message of their own.

use std::io;
use std::marker::PhantomData;

use bytes::{BufMut, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use tokio::net::UnixStream;
use tokio_util::codec::{Decoder, Encoder, Framed, LengthDelimitedCodec};

/// Largest frame accepted on a socket: a 1 MiB read plus generous room for the envelope.
pub const MAX_FRAME: usize = 8 << 20;

/// Bytes of the length in front of each frame.
const LENGTH: usize = 4;

/// The message types a codec reads and writes (function pointers: no ownership, always Send).
type Types<Item, SinkItem> = PhantomData<(fn() -> Item, fn(SinkItem))>;

/// Reads `Item`s and writes `SinkItem`s in the MusicFS framing.
pub struct MsgPackCodec<Item, SinkItem> {
    frames: LengthDelimitedCodec,
    types: Types<Item, SinkItem>,
}

impl<Item, SinkItem> Default for MsgPackCodec<Item, SinkItem> {
    fn default() -> Self {
        Self {
            frames: LengthDelimitedCodec::builder()
                .length_field_length(LENGTH)
                .max_frame_length(MAX_FRAME)
                .new_codec(),
            types: PhantomData,
        }
    }
}

impl<Item: DeserializeOwned, SinkItem> Decoder for MsgPackCodec<Item, SinkItem> {
    type Item = Item;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Item>, io::Error> {
        let Some(frame) = self.frames.decode(src)? else {
            return Ok(None);
        };
        rmp_serde::from_slice(&frame)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl<Item, SinkItem: Serialize> Encoder<SinkItem> for MsgPackCodec<Item, SinkItem> {
    type Error = io::Error;

    fn encode(&mut self, item: SinkItem, dst: &mut BytesMut) -> Result<(), io::Error> {
        let start = dst.len();
        dst.put_u32(0);
        let written = rmp_serde::encode::write(&mut dst.writer(), &item);
        let len = dst.len() - start - LENGTH;
        if let Err(e) = written {
            dst.truncate(start);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        if len > MAX_FRAME {
            dst.truncate(start);
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a message of {len} bytes is over the {MAX_FRAME}-byte frame limit"),
            ));
        }
        dst[start..start + LENGTH].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }
}

/// A tarpc transport over a Unix stream.
pub type UnixTransport<Item, SinkItem> = Framed<UnixStream, MsgPackCodec<Item, SinkItem>>;

/// Wraps a connected stream in the MusicFS framing and codec.
pub fn transport<Item, SinkItem>(stream: UnixStream) -> UnixTransport<Item, SinkItem>
where
    Item: DeserializeOwned,
    SinkItem: Serialize,
{
    Framed::new(stream, MsgPackCodec::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Message {
        id: u64,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    }

    type Codec = MsgPackCodec<Message, Message>;

    #[test]
    fn frames_are_a_big_endian_length_then_messagepack() {
        let message = Message {
            id: 7,
            bytes: vec![1, 2, 3],
        };
        let mut buf = BytesMut::new();
        Codec::default().encode(message, &mut buf).unwrap();
        let body = rmp_serde::to_vec(&Message {
            id: 7,
            bytes: vec![1, 2, 3],
        })
        .unwrap();
        assert_eq!(buf[..4], (body.len() as u32).to_be_bytes());
        assert_eq!(buf[4..], body[..]);
    }

    #[test]
    fn frames_split_anywhere_decode_in_order() {
        let mut codec = Codec::default();
        let mut wire = BytesMut::new();
        let sent: Vec<Message> = (0..3)
            .map(|id| Message {
                id,
                bytes: vec![id as u8; 100_000 * id as usize],
            })
            .collect();
        for m in &sent {
            let copy = Message {
                id: m.id,
                bytes: m.bytes.clone(),
            };
            codec.encode(copy, &mut wire).unwrap();
        }
        // Arriving a few bytes at a time.
        let mut got = Vec::new();
        let mut buf = BytesMut::new();
        for piece in wire.chunks(4093) {
            buf.extend_from_slice(piece);
            while let Some(m) = codec.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, sent);
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_and_malformed_frames_are_errors_not_panics() {
        let mut codec = Codec::default();
        let big = Message {
            id: 1,
            bytes: vec![0; MAX_FRAME + 1],
        };
        let mut buf = BytesMut::from(&b"kept"[..]);
        let err = codec.encode(big, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(&buf[..], b"kept", "a refused message leaves nothing behind");

        let mut garbage = BytesMut::new();
        garbage.put_u32(3);
        garbage.extend_from_slice(&[0xc1, 0xc1, 0xc1]);
        let err = codec.decode(&mut garbage).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        let mut too_long = BytesMut::new();
        too_long.put_u32(MAX_FRAME as u32 + 1);
        assert!(codec.decode(&mut too_long).is_err());
    }
}

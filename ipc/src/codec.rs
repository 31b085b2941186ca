//! The MessagePack (rmp-serde) codec used on every socket, and the framed transport built on it.

use std::io;
use std::marker::PhantomData;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use tokio::net::UnixStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Largest frame accepted on a socket: a 1 MiB read plus generous room for the envelope.
pub const MAX_FRAME: usize = 8 << 20;

type Types<Item, SinkItem> = PhantomData<(fn() -> Item, fn(SinkItem))>;

/// tokio-serde codec that writes compact MessagePack (`rmp_serde::to_vec`).
pub struct MsgPack<Item, SinkItem>(Types<Item, SinkItem>);

impl<Item, SinkItem> Default for MsgPack<Item, SinkItem> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<Item, SinkItem: Serialize> tokio_serde::Serializer<SinkItem> for MsgPack<Item, SinkItem> {
    type Error = io::Error;

    fn serialize(self: Pin<&mut Self>, item: &SinkItem) -> Result<Bytes, io::Error> {
        rmp_serde::to_vec(item)
            .map(Bytes::from)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl<Item: DeserializeOwned, SinkItem> tokio_serde::Deserializer<Item> for MsgPack<Item, SinkItem> {
    type Error = io::Error;

    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> Result<Item, io::Error> {
        rmp_serde::from_slice(src).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// A tarpc transport over a Unix stream: 4-byte length prefix, MessagePack body.
pub type UnixTransport<Item, SinkItem> =
    tarpc::serde_transport::Transport<UnixStream, Item, SinkItem, MsgPack<Item, SinkItem>>;

/// Wraps a connected stream in the MusicFS framing and codec.
pub fn transport<Item, SinkItem>(stream: UnixStream) -> UnixTransport<Item, SinkItem>
where
    Item: DeserializeOwned,
    SinkItem: Serialize,
{
    let framed = Framed::new(
        stream,
        LengthDelimitedCodec::builder()
            .max_frame_length(MAX_FRAME)
            .new_codec(),
    );
    tarpc::serde_transport::new(framed, MsgPack::default())
}

//! Slices of plain-old-data values as byte messages: the fast path for
//! arrays of numbers and `#[repr(C)]` records.
//!
//! The wire form is a plain byte message holding the elements' bytes in
//! the sending host's byte order and layout, nothing else: what Python's
//! `conn.send_bytes(array.tobytes())` sends and
//! `numpy.frombuffer(conn.recv_bytes(), dtype)` reads. Both ends must
//! agree on the element type; a message's length tells only how many
//! bytes it holds, so a length that is not a whole number of elements is
//! the one mistake the receiver can see.

use bytemuck::Pod;

use crate::connection::Connection;
use crate::error::{Error, ErrorKind, Result};
use crate::proto::frame::in_memory_len;
use crate::sys;

impl Connection {
    /// Sends `items` as one byte message of their in-memory bytes (host
    /// byte order), without encoding or copying them:
    /// [`recv_vec`](Connection::recv_vec) or
    /// [`recv_into_slice`](Connection::recv_into_slice) of the same `T`
    /// gets them back, and a Python peer reads them with
    /// `numpy.frombuffer(conn.recv_bytes(), dtype)` or
    /// `array.array(typecode, conn.recv_bytes())`.
    ///
    /// `T` is any [`bytemuck::Pod`] type: the numbers, arrays of them, and
    /// `#[repr(C)]` structs deriving `Pod` and `Zeroable` (re-exported as
    /// [`connection::bytemuck`](crate::bytemuck)). A type of size zero is
    /// [`ErrorKind::InvalidInput`], since a receiver could not count it.
    ///
    /// # Examples
    ///
    /// ```
    /// use connection::bytemuck::{Pod, Zeroable};
    ///
    /// #[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
    /// #[bytemuck(crate = "connection::bytemuck")] // no bytemuck of our own
    /// #[repr(C)]
    /// struct Point {
    ///     x: f32,
    ///     y: f32,
    /// }
    ///
    /// let (mut a, mut b) = connection::pipe()?;
    /// a.send_slice(&[1.5f64, -2.0, 1e300])?;
    /// assert_eq!(b.recv_vec::<f64>()?, [1.5, -2.0, 1e300]);
    ///
    /// let points = [Point { x: 1.0, y: 2.0 }, Point { x: 3.0, y: 4.0 }];
    /// a.send_slice(&points)?;
    /// assert_eq!(b.recv_vec::<Point>()?, points);
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn send_slice<T: Pod>(&mut self, items: &[T]) -> Result<()> {
        check_element_size::<T>()?;
        self.send_bytes(bytemuck::cast_slice(items))
    }

    /// Receives one byte message as a `Vec<T>`, its bytes landing straight
    /// in the vector's memory (one copy, from the socket): the other side
    /// of [`send_slice`](Connection::send_slice), or any byte message
    /// holding `T`s in this host's byte order and layout.
    ///
    /// A message whose length is not a multiple of `size_of::<T>()` is an
    /// [`ErrorKind::Decode`] error saying so; it is consumed and the next
    /// message is readable. A message over
    /// [`max_message_size`](Connection::max_message_size) is
    /// [`ErrorKind::MessageTooLarge`] and stays unread. Memory: the vector
    /// is reserved at the announced length (within `max_message_size`)
    /// and filled straight from the socket, never zeroed first, so the
    /// operating system commits its pages only as bytes land in them: a
    /// lying header costs address space, not memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use connection::ErrorKind;
    ///
    /// let (mut a, mut b) = connection::pipe()?;
    /// a.send_slice(&[1i32, -2, 3])?;
    /// assert_eq!(b.recv_vec::<i32>()?, [1, -2, 3]);
    ///
    /// a.send_bytes(&[0u8; 7])?; // not a whole number of u32s
    /// let err = b.recv_vec::<u32>().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Decode);
    /// a.send_slice(&[7u32])?;
    /// assert_eq!(b.recv_vec::<u32>()?, [7]); // still usable
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn recv_vec<T: Pod>(&mut self) -> Result<Vec<T>> {
        let (len, size) = self.next_len_of::<T>()?;
        let count = len / size;
        let mut items: Vec<T> = Vec::new();
        if items.try_reserve_exact(count).is_err() {
            self.discard_payload(len)?;
            return Err(cannot_allocate(len));
        }
        // The `count` elements' `len` bytes, straight from the socket into
        // `items`' spare capacity, which keeps only what a read filled.
        match sys::append_filled(&mut items, count, |spare| {
            self.receive_payload_into_uninit(spare)
        }) {
            Some(read) => read?,
            None => {
                // Shared memory, which copies only into initialised memory.
                items.resize(count, bytemuck::Zeroable::zeroed());
                self.receive_payload_into(bytemuck::cast_slice_mut(&mut items))?;
            }
        }
        Ok(items)
    }

    /// Receives one byte message of `T`s into the start of `items` and
    /// returns how many arrived: [`recv_vec`](Connection::recv_vec) into
    /// memory the caller already has, as
    /// [`recv_bytes_into`](Connection::recv_bytes_into) is for bytes.
    ///
    /// A message longer than `items` is [`ErrorKind::BufferTooShort`],
    /// carrying the whole message ([`Error::into_message`]); a length that
    /// is not a multiple of `size_of::<T>()` is [`ErrorKind::Decode`]. The
    /// message is consumed either way and the next one is readable.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut a, mut b) = connection::pipe()?;
    /// a.send_slice(&[0.5f32, 0.25])?;
    /// let mut items = [0f32; 4];
    /// let count = b.recv_into_slice(&mut items)?;
    /// assert_eq!(&items[..count], [0.5, 0.25]);
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn recv_into_slice<T: Pod>(&mut self, items: &mut [T]) -> Result<usize> {
        let (len, size) = self.next_len_of::<T>()?;
        Ok(self.receive_into_room(len as u64, bytemuck::cast_slice_mut(items))? / size)
    }

    /// Reads and drops a `len`-byte payload whose header was read, so that
    /// the next message is readable.
    fn discard_payload(&mut self, len: usize) -> Result<()> {
        self.read_payload(len as u64, &mut Vec::new())
    }

    /// The next message's length and the size of a `T`, if the message is
    /// whole `T`s; one that is not is consumed and refused.
    fn next_len_of<T>(&mut self) -> Result<(usize, usize)> {
        let size = check_element_size::<T>()?;
        let len = in_memory_len(self.next_message_len(self.max_message_size())?)?;
        if len % size != 0 {
            self.discard_payload(len)?;
            return Err(partial_element_error::<T>(len));
        }
        Ok((len, size))
    }
}

/// The size of `T`, or [`ErrorKind::InvalidInput`] for a type of size
/// zero, whose count a byte message cannot carry.
pub(crate) fn check_element_size<T>() -> Result<usize> {
    match std::mem::size_of::<T>() {
        0 => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} has size zero: a byte message cannot count its elements",
                std::any::type_name::<T>()
            ),
        )),
        size => Ok(size),
    }
}

/// The error for a `len`-byte message that no memory could be found for.
pub(crate) fn cannot_allocate(len: usize) -> Error {
    let what = format!("cannot allocate {len} bytes for a message; it was discarded");
    Error::new(ErrorKind::MessageTooLarge, what)
}

/// The error for a `len`-byte message that is not a whole number of `T`s.
pub(crate) fn partial_element_error<T>(len: usize) -> Error {
    let size = std::mem::size_of::<T>();
    Error::new(
        ErrorKind::Decode,
        format!(
            "{len}-byte message is not a whole number of {} ({size} bytes each): {} bytes left over; \
             the message was consumed",
            std::any::type_name::<T>(),
            len % size
        ),
    )
}

#[cfg(test)]
mod tests {
    use bytemuck::{Pod, Zeroable};

    use crate::error::ErrorKind;
    use crate::pipe::pipe;

    #[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
    #[repr(C)]
    struct Sample {
        time: f64,
        channel: u32,
        level: i16,
        flags: [u8; 2],
    }

    #[test]
    fn repr_c_structs_round_trip() {
        let (mut a, mut b) = pipe().unwrap();
        let samples: Vec<Sample> = (0..1000)
            .map(|i| Sample {
                time: f64::from(i) * 0.5,
                channel: i as u32 * 7,
                level: -(i as i16),
                flags: [i as u8, !(i as u8)],
            })
            .collect();
        a.send_slice(&samples).unwrap();
        assert_eq!(b.recv_vec::<Sample>().unwrap(), samples);
    }

    #[test]
    fn the_wire_form_is_the_bytes_in_host_order() {
        let (mut a, mut b) = pipe().unwrap();
        a.send_slice(&[0x0102_0304u32, 5]).unwrap();
        let bytes = b.recv_bytes().unwrap();
        let expected: Vec<u8> = [0x0102_0304u32, 5]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        assert_eq!(bytes, expected);
        b.send_bytes(&expected).unwrap();
        assert_eq!(a.recv_vec::<u32>().unwrap(), [0x0102_0304, 5]);
    }

    #[test]
    fn an_odd_length_is_refused_and_the_next_message_is_intact() {
        let (a, mut b) = pipe().unwrap();
        for odd in [1usize, 7, 9, 4095, (3 << 20) + 3] {
            let mut sender = a.try_clone().unwrap();
            let writer = std::thread::spawn(move || {
                sender.send_bytes(&vec![1u8; odd]).unwrap();
                sender.send_slice(&[42.0f64]).unwrap();
            });
            let err = b.recv_vec::<f64>().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Decode, "{odd}: {err}");
            assert!(err.to_string().contains("whole number"), "{err}");
            assert_eq!(b.recv_vec::<f64>().unwrap(), [42.0]);
            writer.join().unwrap();
        }
    }

    #[test]
    fn an_odd_length_into_a_slice_is_refused_too() {
        let (mut a, mut b) = pipe().unwrap();
        a.send_bytes(&[0u8; 6]).unwrap();
        a.send_slice(&[3u16, 4]).unwrap();
        let mut items = [0u32; 4];
        let err = b.recv_into_slice(&mut items).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        let mut items = [0u16; 4];
        assert_eq!(b.recv_into_slice(&mut items).unwrap(), 2);
        assert_eq!(items, [3, 4, 0, 0]);
    }

    #[test]
    fn a_slice_too_short_gets_the_whole_message_in_the_error() {
        let (mut a, mut b) = pipe().unwrap();
        a.send_slice(&[1u64, 2, 3]).unwrap();
        let mut items = [0u64; 2];
        let err = b.recv_into_slice(&mut items).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BufferTooShort);
        let message = err.into_message().unwrap();
        assert_eq!(bytemuck::pod_collect_to_vec::<u8, u64>(&message), [1, 2, 3]);
    }

    #[test]
    fn max_message_size_is_honoured_and_the_message_waits() {
        let (mut a, mut b) = pipe().unwrap();
        b.set_max_message_size(16);
        a.send_slice(&[1.0f64, 2.0, 3.0]).unwrap();
        let err = b.recv_vec::<f64>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
        b.set_max_message_size(24);
        assert_eq!(b.recv_vec::<f64>().unwrap(), [1.0, 2.0, 3.0]);
    }

    #[test]
    fn a_lying_header_is_truncated_not_an_allocation_of_its_claim() {
        let (a, mut b) = pipe().unwrap();
        let sock = crate::sys::Socket::from_owned(std::os::fd::OwnedFd::from(a));
        // Claims 800 MB (under the 1 GiB default), sends 16 bytes, leaves.
        let mut message = 800_000_000i32.to_be_bytes().to_vec();
        message.extend_from_slice(&[0u8; 16]);
        sock.write(&message).unwrap();
        drop(sock);
        let err = b.recv_vec::<f64>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
    }

    #[test]
    fn empty_slices_and_zero_sized_types() {
        let (mut a, mut b) = pipe().unwrap();
        a.send_slice::<f32>(&[]).unwrap();
        assert!(b.recv_vec::<f32>().unwrap().is_empty());
        let err = a.send_slice(&[(), ()]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        a.send_bytes(b"").unwrap();
        assert_eq!(
            b.recv_vec::<()>().unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        // Refused before reading: the message is still there.
        assert_eq!(b.recv_bytes().unwrap(), b"");
    }
}

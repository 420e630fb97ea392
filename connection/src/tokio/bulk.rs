//! [`AsyncConnection`]'s slices of plain-old-data values: the async twins
//! of `Connection::send_slice`, `recv_vec` and `recv_into_slice`, with the
//! same wire form (the elements' bytes in host order) and errors.

use bytemuck::Pod;

use super::connection::AsyncConnection;
use crate::bulk::{cannot_allocate, check_element_size, partial_element_error};
use crate::error::Result;

impl AsyncConnection {
    /// Sends `items` as one byte message of their in-memory bytes: see
    /// [`Connection::send_slice`](crate::Connection::send_slice).
    ///
    /// # Examples
    ///
    /// ```
    /// use connection::tokio::AsyncConnection;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let (mut a, mut b) = AsyncConnection::pair()?;
    /// a.send_slice(&[1.5f64, -2.0]).await?;
    /// assert_eq!(b.recv_vec::<f64>().await?, [1.5, -2.0]);
    /// # Ok::<(), connection::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn send_slice<T: Pod>(&mut self, items: &[T]) -> Result<()> {
        check_element_size::<T>()?;
        self.send_bytes(bytemuck::cast_slice(items)).await
    }

    /// Receives one byte message as a `Vec<T>`, its bytes landing in the
    /// vector's memory: see
    /// [`Connection::recv_vec`](crate::Connection::recv_vec) for the
    /// errors and the memory it sets aside. Cancel-safe: a receive dropped
    /// part way keeps what arrived, and the next receive gets the message
    /// whole.
    pub async fn recv_vec<T: Pod>(&mut self) -> Result<Vec<T>> {
        let (len, size) = self.next_len_of::<T>().await?;
        let Ok(mut items) = bytemuck::allocation::try_zeroed_vec::<T>(len / size) else {
            self.read_payload(len, false).await?;
            return Err(cannot_allocate(len));
        };
        self.receive_payload_into(bytemuck::cast_slice_mut(&mut items))
            .await?;
        Ok(items)
    }

    /// Receives one byte message of `T`s into the start of `items` and
    /// returns how many arrived: see
    /// [`Connection::recv_into_slice`](crate::Connection::recv_into_slice).
    /// Cancel-safe, as [`recv_vec`](Self::recv_vec).
    pub async fn recv_into_slice<T: Pod>(&mut self, items: &mut [T]) -> Result<usize> {
        let (len, size) = self.next_len_of::<T>().await?;
        let room = bytemuck::cast_slice_mut(items);
        Ok(self.receive_into_room(len, room).await? / size)
    }

    /// The next message's length and the size of a `T`, if the message is
    /// whole `T`s; one that is not is consumed and refused.
    async fn next_len_of<T>(&mut self) -> Result<(usize, usize)> {
        let size = check_element_size::<T>()?;
        let len = self.next_len(self.max_message_size()).await?;
        if len % size != 0 {
            self.read_payload(len, false).await?;
            return Err(partial_element_error::<T>(len));
        }
        Ok((len, size))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::error::ErrorKind;
    use crate::tokio::AsyncConnection;

    fn run<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn slices_round_trip_and_odd_lengths_are_refused() {
        run(async {
            let (mut a, mut b) = AsyncConnection::pair().unwrap();
            let floats: Vec<f64> = (0..200_000).map(f64::from).collect();
            let expected = floats.clone();
            let writer = tokio::spawn(async move {
                a.send_slice(&floats).await.unwrap();
                a.send_bytes(&[0u8; 5]).await.unwrap();
                a.send_slice(&[9u16, 8]).await.unwrap();
                a
            });
            assert_eq!(b.recv_vec::<f64>().await.unwrap(), expected);
            let err = b.recv_vec::<u16>().await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Decode);
            let mut items = [0u16; 3];
            assert_eq!(b.recv_into_slice(&mut items).await.unwrap(), 2);
            assert_eq!(items, [9, 8, 0]);
            drop(writer.await.unwrap());
        });
    }

    #[test]
    fn a_recv_vec_dropped_mid_message_loses_nothing() {
        run(async {
            let (mut a, mut b) = AsyncConnection::pair().unwrap();
            let big: Vec<u32> = (0..10_000_000).collect();
            let expected = big.clone();
            let writer = tokio::spawn(async move {
                a.send_slice(&big).await.unwrap();
                a
            });
            // Most likely dropped part way through the 40 MB; if it did
            // finish, it must have the message whole.
            let first = tokio::time::timeout(Duration::from_millis(2), b.recv_vec::<u32>()).await;
            let got = match first {
                Ok(result) => result.unwrap(),
                Err(_elapsed) => b.recv_vec::<u32>().await.unwrap(),
            };
            assert!(got == expected, "the message changed");
            drop(writer.await.unwrap());
        });
    }
}

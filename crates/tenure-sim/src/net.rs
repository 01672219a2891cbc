//! tonic over turmoil's simulated network: a [`Connector`] for the raft
//! transport and the clients, and an incoming stream for the servers.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tenure_raft::Connector;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_stream::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

/// Reaches `host:port` over turmoil.
#[derive(Clone, Copy, Debug, Default)]
pub struct TurmoilConnector;

impl Connector for TurmoilConnector {
    fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        endpoint(addr).map(|e| e.connect_with_connector_lazy(dial()))
    }
}

fn dial() -> impl tower::Service<
    Uri,
    Response = TokioIo<turmoil::net::TcpStream>,
    Error = io::Error,
    Future = impl Future<Output = io::Result<TokioIo<turmoil::net::TcpStream>>> + Send,
> + Clone
+ Send {
    tower::service_fn(|uri: Uri| async move {
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri.port_u16().unwrap_or(80);
        let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
        Ok::<_, io::Error>(TokioIo::new(stream))
    })
}

fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    // Keep-alive finds a connection a partition silently broke, so the
    // channel reconnects once the partition heals.
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .http2_keep_alive_interval(Duration::from_millis(500))
        .keep_alive_timeout(Duration::from_millis(500))
        .keep_alive_while_idle(true))
}

/// An accepted simulated connection, as tonic's server wants it.
pub struct Accepted(turmoil::net::TcpStream);

impl Connected for Accepted {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Accepted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Accepts simulated connections on `port` of this host, forever.
pub async fn incoming(port: u16) -> io::Result<impl Stream<Item = io::Result<Accepted>>> {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let accepted = listener.accept().await.map(|(s, _)| Accepted(s));
            if tx.send(accepted).is_err() {
                return;
            }
        }
    });
    Ok(UnboundedReceiverStream::new(rx))
}

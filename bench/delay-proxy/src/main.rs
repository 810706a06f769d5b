//! `delay-proxy DELAY_MS MARK LISTEN=UPSTREAM...`: accepts on each LISTEN address and relays
//! to its UPSTREAM, holding every byte DELAY_MS milliseconds in each direction (a round trip
//! of twice that), with at most [`WINDOW`] bytes in flight per direction, as a TCP window
//! would allow. Its own connections carry the firewall mark MARK, so that a rule redirecting
//! a host's port to the proxy can leave the proxy's traffic alone. A connection's first bytes
//! wait one round trip more: the TCP handshake the proxy answers at once.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Bytes read at a time.
const PIECE: usize = 64 << 10;
/// Bytes in flight per direction: 6 MiB, Linux's largest default TCP receive window.
const WINDOW: usize = 6 << 20;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: delay-proxy DELAY_MS MARK LISTEN=UPSTREAM...";
    let (Some(delay), Some(mark)) =
        (args.first().and_then(|a| a.parse().ok()), args.get(1).and_then(|a| a.parse::<u32>().ok()))
    else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let delay = Duration::from_millis(delay);
    for map in &args[2..] {
        let Some((Ok(listen), Ok(upstream))) =
            map.split_once('=').map(|(l, u)| (l.parse::<SocketAddr>(), u.parse::<SocketAddr>()))
        else {
            eprintln!("{usage} (not LISTEN=UPSTREAM: {map})");
            std::process::exit(2);
        };
        let listener = match TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on {listen}: {e}");
                std::process::exit(1);
            }
        };
        tokio::spawn(serve(listener, upstream, delay, mark));
    }
    println!("ready");
    let _ = tokio::signal::ctrl_c().await;
}

async fn serve(listener: TcpListener, upstream: SocketAddr, delay: Duration, mark: u32) {
    loop {
        let Ok((down, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            tokio::time::sleep(2 * delay).await;
            match connect(upstream, mark).await {
                Ok(up) => relay(down, up, delay).await,
                Err(e) => eprintln!("cannot reach {upstream}: {e}"),
            }
        });
    }
}

async fn connect(upstream: SocketAddr, mark: u32) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket2::SockRef::from(&socket).set_mark(mark)?;
    socket.connect(upstream).await
}

async fn relay(down: TcpStream, up: TcpStream, delay: Duration) {
    let _ = (down.set_nodelay(true), up.set_nodelay(true));
    let (down_r, down_w) = down.into_split();
    let (up_r, up_w) = up.into_split();
    tokio::join!(pipe(down_r, up_w, delay), pipe(up_r, down_w, delay));
}

/// Copies `r` to `w`, each piece written `delay` after it was read.
async fn pipe(mut r: OwnedReadHalf, mut w: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(WINDOW / PIECE);
    let reader = async move {
        loop {
            let mut piece = vec![0u8; PIECE];
            match r.read(&mut piece).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    piece.truncate(n);
                    if tx.send((Instant::now() + delay, piece)).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, piece)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if w.write_all(&piece).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    };
    tokio::join!(reader, writer);
}

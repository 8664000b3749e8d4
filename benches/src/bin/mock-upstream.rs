//! `mock-upstream`: the load bench's OpenAI-compatible upstream, until killed.
//!
//! mock-upstream --listen 127.0.0.1:18000 [--chunks 3] [--chunk-interval-ms 0]
//!               [--first-byte-delay-ms 0] [--threads 1]

use clap::Parser;
use std::net::SocketAddr;
use std::time::Duration;
use switchyard_benches::upstream::{MockUpstream, MockUpstreamConfig};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:18000")]
    listen: SocketAddr,
    /// Content chunks per streamed answer.
    #[arg(long, default_value_t = 3)]
    chunks: usize,
    /// Pause between streamed events, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_interval_ms: u64,
    /// Wait before answering anything (slow requests held open by the proxy).
    #[arg(long, default_value_t = 0)]
    first_byte_delay_ms: u64,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async {
        let config = MockUpstreamConfig {
            stream_chunks: args.chunks,
            chunk_interval: Duration::from_millis(args.chunk_interval_ms),
            first_byte_delay: Duration::from_millis(args.first_byte_delay_ms),
            record: false,
            ..MockUpstreamConfig::default()
        };
        let up = MockUpstream::start_on(args.listen, config).await?;
        eprintln!("mock-upstream listening on {}", up.addr);
        std::future::pending::<()>().await;
        Ok(())
    })
}

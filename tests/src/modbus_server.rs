//! A Modbus TCP device for tests: the simulator's [`ModbusTcpServer`] over 100 writable
//! registers, so any request reaching address 100 or beyond gets `IllegalDataAddress`; it can
//! stop and restart on the same port.

use std::net::SocketAddr;

use waterline_sim::modbus_device::{Framing, ModbusTcpServer, RegisterBank};

/// Registers live below this address; a request reaching it gets an exception.
pub const EXCEPTION_FROM: u16 = 100;

/// A running test device.
#[derive(Debug)]
pub struct ModbusServer {
    pub addr: SocketAddr,
    server: ModbusTcpServer,
}

impl ModbusServer {
    /// Starts a device on a free loopback port.
    pub async fn start() -> anyhow::Result<ModbusServer> {
        Self::start_framed(Framing::Tcp).await
    }

    /// Starts a device behind a serial-to-TCP gateway: RTU frames over TCP.
    pub async fn start_rtu_over_tcp() -> anyhow::Result<ModbusServer> {
        Self::start_framed(Framing::RtuOverTcp).await
    }

    async fn start_framed(framing: Framing) -> anyhow::Result<ModbusServer> {
        let server = ModbusTcpServer::bind_framed(
            ([127, 0, 0, 1], 0).into(),
            RegisterBank::new(EXCEPTION_FROM),
            framing,
        )
        .await?;
        Ok(ModbusServer {
            addr: server.addr(),
            server,
        })
    }

    /// Sets registers starting at `addr`.
    pub fn set(&self, addr: u16, words: &[u16]) {
        self.server.bank().set(addr, words);
    }

    /// The register at `addr`.
    pub fn get(&self, addr: u16) -> u16 {
        self.server.bank().get(addr)
    }

    /// The coil at `addr`.
    pub fn coil(&self, addr: u16) -> bool {
        self.server.bank().coil(addr)
    }

    /// Stops serving: open connections are dropped, the port is released.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Serves again on the same port with the same registers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        Ok(self.server.restart().await?)
    }
}

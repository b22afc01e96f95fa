//! A Modbus TCP server for tests: holding and input registers in a shared map, an exception
//! (`IllegalDataAddress`) for any request reaching address 100 or beyond, and stop/restart on
//! the same port.

use std::collections::HashMap;
use std::future::Ready;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_modbus::{ExceptionCode, Request, Response};

/// Registers live below this address; a request reaching it gets an exception.
pub const EXCEPTION_FROM: u16 = 100;

type Registers = Arc<Mutex<HashMap<u16, u16>>>;

#[derive(Debug, Clone)]
struct Device {
    registers: Registers,
}

impl Device {
    fn read(&self, addr: u16, count: u16) -> Result<Vec<u16>, ExceptionCode> {
        if u32::from(addr) + u32::from(count) > u32::from(EXCEPTION_FROM) {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let regs = self.registers.lock().unwrap_or_else(|e| e.into_inner());
        Ok((addr..addr + count)
            .map(|a| regs.get(&a).copied().unwrap_or(0))
            .collect())
    }

    fn write(&self, addr: u16, words: &[u16]) -> Result<(), ExceptionCode> {
        if u32::from(addr) + words.len() as u32 > u32::from(EXCEPTION_FROM) {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let mut regs = self.registers.lock().unwrap_or_else(|e| e.into_inner());
        for (i, w) in words.iter().enumerate() {
            regs.insert(addr + i as u16, *w);
        }
        Ok(())
    }
}

impl tokio_modbus::server::Service for Device {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let res = match req {
            Request::ReadHoldingRegisters(a, n) => {
                self.read(a, n).map(Response::ReadHoldingRegisters)
            }
            Request::ReadInputRegisters(a, n) => self.read(a, n).map(Response::ReadInputRegisters),
            Request::WriteSingleRegister(a, w) => self
                .write(a, &[w])
                .map(|()| Response::WriteSingleRegister(a, w)),
            Request::WriteMultipleRegisters(a, ws) => self
                .write(a, &ws)
                .map(|()| Response::WriteMultipleRegisters(a, ws.len() as u16)),
            _ => Err(ExceptionCode::IllegalFunction),
        };
        std::future::ready(res)
    }
}

/// A running test device.
#[derive(Debug)]
pub struct ModbusServer {
    pub addr: SocketAddr,
    registers: Registers,
    task: Option<JoinHandle<()>>,
}

impl ModbusServer {
    /// Starts a device on a free loopback port.
    pub async fn start() -> anyhow::Result<ModbusServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut s = ModbusServer {
            addr,
            registers: Arc::default(),
            task: None,
        };
        s.serve(listener);
        Ok(s)
    }

    fn serve(&mut self, listener: TcpListener) {
        let device = Device {
            registers: self.registers.clone(),
        };
        self.task = Some(tokio::spawn(async move {
            let server = Server::new(listener);
            let on_connected = |stream, socket_addr| {
                let device = device.clone();
                async move {
                    accept_tcp_connection(stream, socket_addr, move |_| Ok(Some(device.clone())))
                }
            };
            let _ = server.serve(&on_connected, |_err| {}).await;
        }));
    }

    /// Sets registers starting at `addr`.
    pub fn set(&self, addr: u16, words: &[u16]) {
        let mut regs = self.registers.lock().unwrap_or_else(|e| e.into_inner());
        for (i, w) in words.iter().enumerate() {
            regs.insert(addr + i as u16, *w);
        }
    }

    /// The register at `addr`.
    pub fn get(&self, addr: u16) -> u16 {
        let regs = self.registers.lock().unwrap_or_else(|e| e.into_inner());
        regs.get(&addr).copied().unwrap_or(0)
    }

    /// Stops serving: open connections are dropped, the port is released.
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Serves again on the same port with the same registers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }
}

impl Drop for ModbusServer {
    fn drop(&mut self) {
        self.stop();
    }
}

//! A Modbus TCP device: a bank of 16-bit registers served to any number of clients
//! (tokio-modbus server). Holding and input registers read the same bank, as on many small
//! RTUs; coils (read also as discrete inputs) are a bank of bits of the same size. A request
//! reaching past the bank's size gets the exception `IllegalDataAddress`, and so does a write
//! to a register outside the writable ranges; accepted register writes are logged for the
//! owner to act on ([`RegisterBank::take_writes`]). The simulator's PRV controllers use it
//! (`twin::live`), and the tests use it as a plain device.

use std::future::Ready;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::server::rtu_over_tcp;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_modbus::{ExceptionCode, Request, Response};

#[derive(Debug, Default)]
struct Bank {
    words: Vec<u16>,
    /// Coils (also answered as discrete inputs), as many as registers; all writable.
    coils: Vec<bool>,
    /// Empty: every register is writable.
    writable: Vec<Range<u16>>,
    writes: Vec<(u16, Vec<u16>)>,
}

/// The registers of one device, shared between its server and its owner.
#[derive(Debug, Clone, Default)]
pub struct RegisterBank(Arc<Mutex<Bank>>);

impl RegisterBank {
    /// A bank of `size` registers (addresses `0..size`), all zero and all writable.
    pub fn new(size: u16) -> Self {
        RegisterBank(Arc::new(Mutex::new(Bank {
            words: vec![0; usize::from(size)],
            coils: vec![false; usize::from(size)],
            ..Bank::default()
        })))
    }

    /// Only registers in `ranges` accept writes.
    pub fn writable_only(self, ranges: Vec<Range<u16>>) -> Self {
        self.lock().writable = ranges;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Bank> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets registers from `addr` on (as the device itself does; writability does not apply).
    /// Words past the bank's end are ignored.
    pub fn set(&self, addr: u16, words: &[u16]) {
        let mut bank = self.lock();
        for (i, w) in words.iter().enumerate() {
            if let Some(slot) = bank.words.get_mut(usize::from(addr) + i) {
                *slot = *w;
            }
        }
    }

    /// The register at `addr` (0 beyond the bank).
    pub fn get(&self, addr: u16) -> u16 {
        self.lock()
            .words
            .get(usize::from(addr))
            .copied()
            .unwrap_or(0)
    }

    /// The coil at `addr` (false beyond the bank).
    pub fn coil(&self, addr: u16) -> bool {
        self.lock()
            .coils
            .get(usize::from(addr))
            .copied()
            .unwrap_or(false)
    }

    fn read_coils(&self, addr: u16, count: u16) -> Result<Vec<bool>, ExceptionCode> {
        let bank = self.lock();
        let (start, end) = (usize::from(addr), usize::from(addr) + usize::from(count));
        if count == 0 || end > bank.coils.len() {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        Ok(bank.coils[start..end].to_vec())
    }

    fn write_coils(&self, addr: u16, bits: &[bool]) -> Result<(), ExceptionCode> {
        let mut bank = self.lock();
        let end = usize::from(addr) + bits.len();
        if bits.is_empty() || end > bank.coils.len() {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        bank.coils[usize::from(addr)..end].copy_from_slice(bits);
        Ok(())
    }

    /// The writes clients made since the last call, oldest first, as (address, words).
    pub fn take_writes(&self) -> Vec<(u16, Vec<u16>)> {
        std::mem::take(&mut self.lock().writes)
    }

    fn read(&self, addr: u16, count: u16) -> Result<Vec<u16>, ExceptionCode> {
        let bank = self.lock();
        let (start, end) = (usize::from(addr), usize::from(addr) + usize::from(count));
        if count == 0 || end > bank.words.len() {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        Ok(bank.words[start..end].to_vec())
    }

    fn write(&self, addr: u16, words: &[u16]) -> Result<(), ExceptionCode> {
        let mut bank = self.lock();
        let end = usize::from(addr) + words.len();
        if words.is_empty() || end > bank.words.len() {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let allowed = bank.writable.is_empty()
            || bank
                .writable
                .iter()
                .any(|r| usize::from(r.start) <= usize::from(addr) && end <= usize::from(r.end));
        if !allowed {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        bank.words[usize::from(addr)..end].copy_from_slice(words);
        bank.writes.push((addr, words.to_vec()));
        Ok(())
    }
}

impl tokio_modbus::server::Service for RegisterBank {
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
            Request::ReadCoils(a, n) => self.read_coils(a, n).map(Response::ReadCoils),
            Request::ReadDiscreteInputs(a, n) => {
                self.read_coils(a, n).map(Response::ReadDiscreteInputs)
            }
            Request::WriteSingleCoil(a, b) => self
                .write_coils(a, &[b])
                .map(|()| Response::WriteSingleCoil(a, b)),
            _ => Err(ExceptionCode::IllegalFunction),
        };
        std::future::ready(res)
    }
}

/// How requests are framed on the TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Modbus TCP (MBAP header).
    Tcp,
    /// Modbus RTU frames (unit id, PDU, CRC) over TCP, as a serial-to-Ethernet gateway relays
    /// them. Every unit id is answered from the one bank.
    RtuOverTcp,
}

/// A running Modbus TCP server over one bank.
#[derive(Debug)]
pub struct ModbusTcpServer {
    addr: SocketAddr,
    bank: RegisterBank,
    framing: Framing,
    task: Option<JoinHandle<()>>,
}

impl ModbusTcpServer {
    /// Serves `bank` on `addr` (port 0 picks a free port; [`Self::addr`] tells which).
    pub async fn bind(addr: SocketAddr, bank: RegisterBank) -> std::io::Result<Self> {
        Self::bind_framed(addr, bank, Framing::Tcp).await
    }

    /// Serves `bank` on `addr` with the given framing.
    pub async fn bind_framed(
        addr: SocketAddr,
        bank: RegisterBank,
        framing: Framing,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let mut s = ModbusTcpServer {
            addr: listener.local_addr()?,
            bank,
            framing,
            task: None,
        };
        s.serve(listener);
        Ok(s)
    }

    fn serve(&mut self, listener: TcpListener) {
        let bank = self.bank.clone();
        let framing = self.framing;
        self.task = Some(tokio::spawn(async move {
            let result = match framing {
                Framing::Tcp => {
                    let on_connected = |stream, socket_addr| {
                        let bank = bank.clone();
                        async move {
                            accept_tcp_connection(stream, socket_addr, move |_| {
                                Ok(Some(bank.clone()))
                            })
                        }
                    };
                    Server::new(listener).serve(&on_connected, |_err| {}).await
                }
                Framing::RtuOverTcp => {
                    let on_connected = |stream, socket_addr| {
                        let bank = bank.clone();
                        async move {
                            rtu_over_tcp::accept_tcp_connection(stream, socket_addr, move |_| {
                                Ok(Some(bank.clone()))
                            })
                        }
                    };
                    rtu_over_tcp::Server::new(listener)
                        .serve(&on_connected, |_err| {})
                        .await
                }
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "Modbus server stopped");
            }
        }));
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The registers.
    pub fn bank(&self) -> &RegisterBank {
        &self.bank
    }

    /// Stops serving: open connections are dropped, the port is released.
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Serves again on the same port with the same registers.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }
}

impl Drop for ModbusTcpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

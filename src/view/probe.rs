//! A container's probe, as far as the rules and the startup-probe mutation
//! read it: its check (the handler) and its timing.
//!
//! Decoded as k8s-openapi decodes a `Probe` and its handlers: every field
//! optional, absent and `null` alike, a required field (`port`, a header's
//! `name` and `value`) the type's default when absent or `null`, a port an
//! int-or-string refused when it is neither or beyond 32 bits.
//! `successThreshold` and `terminationGracePeriodSeconds` are not read, so
//! they are skipped unbuilt, as every unread field is.
//!
//! Every probe of every container is decoded on every admission, so the
//! strings are [`CompactString`]s: a path, a port name or a scheme (24
//! bytes or fewer) is held in place, not allocated.

use std::fmt;

use compact_str::CompactString;
use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::nullable;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ExecAction {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<CompactString>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpGetAction {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<CompactString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_headers: Option<Vec<HttpHeader>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<CompactString>,
    #[serde(default, deserialize_with = "nullable")]
    pub port: ProbePort,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<CompactString>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct HttpHeader {
    #[serde(default, deserialize_with = "nullable")]
    pub name: CompactString,
    #[serde(default, deserialize_with = "nullable")]
    pub value: CompactString,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct TcpSocketAction {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<CompactString>,
    #[serde(default, deserialize_with = "nullable")]
    pub port: ProbePort,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct GrpcAction {
    #[serde(default, deserialize_with = "nullable")]
    pub port: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<CompactString>,
}

/// A probe's port: a number, or the name of one of the container's ports
/// (k8s-openapi's `IntOrString`; 0 when absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ProbePort {
    Number(i32),
    Name(CompactString),
}

impl Default for ProbePort {
    fn default() -> Self {
        ProbePort::Number(0)
    }
}

impl<'de> Deserialize<'de> for ProbePort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = ProbePort;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("IntOrString")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ProbePort, E> {
                i32::try_from(v)
                    .map(ProbePort::Number)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &"a 32-bit integer"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ProbePort, E> {
                i32::try_from(v)
                    .map(ProbePort::Number)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &"a 32-bit integer"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ProbePort, E> {
                Ok(ProbePort::Name(v.into()))
            }
        }
        d.deserialize_any(PortVisitor)
    }
}

// What the startup-probe mutation adds is written as k8s-openapi writes a
// Probe, so it is built from these.

impl From<&ProbePort> for IntOrString {
    fn from(port: &ProbePort) -> IntOrString {
        match port {
            ProbePort::Number(n) => IntOrString::Int(*n),
            ProbePort::Name(name) => IntOrString::String(name.to_string()),
        }
    }
}

fn owned(text: &Option<CompactString>) -> Option<String> {
    text.as_ref().map(CompactString::to_string)
}

impl From<&ExecAction> for k8s::ExecAction {
    fn from(exec: &ExecAction) -> k8s::ExecAction {
        k8s::ExecAction {
            command: exec
                .command
                .as_ref()
                .map(|c| c.iter().map(CompactString::to_string).collect()),
        }
    }
}

impl From<&HttpGetAction> for k8s::HTTPGetAction {
    fn from(http: &HttpGetAction) -> k8s::HTTPGetAction {
        k8s::HTTPGetAction {
            host: owned(&http.host),
            http_headers: http.http_headers.as_ref().map(|headers| {
                headers
                    .iter()
                    .map(|h| k8s::HTTPHeader {
                        name: h.name.to_string(),
                        value: h.value.to_string(),
                    })
                    .collect()
            }),
            path: owned(&http.path),
            port: (&http.port).into(),
            scheme: owned(&http.scheme),
        }
    }
}

impl From<&TcpSocketAction> for k8s::TCPSocketAction {
    fn from(tcp: &TcpSocketAction) -> k8s::TCPSocketAction {
        k8s::TCPSocketAction {
            host: owned(&tcp.host),
            port: (&tcp.port).into(),
        }
    }
}

impl From<&GrpcAction> for k8s::GRPCAction {
    fn from(grpc: &GrpcAction) -> k8s::GRPCAction {
        k8s::GRPCAction {
            port: grpc.port,
            service: owned(&grpc.service),
        }
    }
}

//! The control protocol between `xengt-ctl` and `xengtd`: newline-delimited JSON over a
//! Unix stream socket, one request line → one response line.
//!
//! Request:  `{"version":1,"id":7,"op":{"cmd":"attach","domid":5,"type":"GVTg_V5_4"}}`
//! Response: `{"version":1,"id":7,"ok":{…}}` or
//!           `{"version":1,"id":7,"error":{"code":"no_such_type","message":"…"}}`
//!
//! Versioning: the client sends [`PROTO_VERSION`]; the daemon refuses other versions with
//! `unsupported_version` (saying which it speaks). Unknown fields are errors. A line is at
//! most [`MAX_LINE`] bytes. Nothing is executed until a complete, valid line arrived, so a
//! peer that sends garbage or disconnects mid-request changes no state.
//!
//! Compatibility within version 1: fields are only ever added to replies (clients ignore
//! reply fields they do not know, and read missing ones as their default), and new
//! operations are added (an older daemon answers them `bad_request`). `domains` and the
//! `name` of [`VgpuInfo`] and the daemon facts of [`StatusInfo`] beyond `version`,
//! `backend`, `vgpus` and `hotplug` came this way, so the version stayed 1.

use mediator::counters::VgpuCounters;
use mediator::display::fb::Tiling;
use mediator::display::{DisplayCaps, PlaneInfo};
use serde::{Deserialize, Serialize};

use crate::xlcfg::GuestConfig;

mod base64;
pub use self::base64::{base64_decode, base64_encode};

/// Protocol version spoken by this build.
pub const PROTO_VERSION: u32 = 1;
/// Longest accepted request/response line (bytes, without the newline).
pub const MAX_LINE: usize = 64 * 1024;

/// Protocol framing/decoding errors.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The line is not a valid request/response.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The line exceeds [`MAX_LINE`].
    #[error("message longer than {MAX_LINE} bytes")]
    TooLong,
}

/// One request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Must equal [`PROTO_VERSION`].
    pub version: u32,
    /// Echoed in the response.
    #[serde(default)]
    pub id: u64,
    /// The operation.
    pub op: Op,
}

/// Operations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Daemon facts (version, backend, counts).
    Status,
    /// All vGPUs.
    List,
    /// The vGPU types with free capacity.
    Types,
    /// One vGPU.
    Info {
        /// Guest domain.
        domid: u16,
    },
    /// Create a vGPU for an existing domain.
    Attach {
        /// Guest domain.
        domid: u16,
        /// Type name (`None` = the default type).
        #[serde(rename = "type", default)]
        type_name: Option<String>,
    },
    /// Simulated backend only: start a simulated domain from a parsed guest config and
    /// attach its vGPU.
    Create {
        /// The parsed config (as `xengt-ctl parse-config` prints it).
        config: GuestConfig,
    },
    /// Tear a vGPU down (and a simulated domain with it).
    Destroy {
        /// Guest domain.
        domid: u16,
    },
    /// The guest's primary plane as PNG ([`ScreenshotInfo`], the PNG base64-encoded).
    Screenshot {
        /// Guest domain.
        domid: u16,
    },
    /// The domains the daemon knows, with their names ([`DomainInfo`]), for clients that
    /// turn a domain name into an id.
    Domains,
}

/// Machine-readable error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, wrong fields, bad values.
    BadRequest,
    /// Different protocol version.
    UnsupportedVersion,
    /// No vGPU (or no domain) with that id.
    UnknownDomain,
    /// The domain already has a vGPU.
    AlreadyAttached,
    /// No type of that name.
    NoSuchType,
    /// Not enough graphics memory/fences/vGPU slots left.
    NoResources,
    /// Known operation that this build/backend cannot do yet.
    Unsupported,
    /// The hypervisor backend failed.
    Backend,
    /// The guest shows no image (plane disabled or outside its graphics memory).
    NoImage,
}

/// An error response body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// Code.
    pub code: ErrorCode,
    /// One line saying what to fix.
    pub message: String,
}

impl ErrorBody {
    /// Shorthand.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
        }
    }
}

/// One response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    /// [`PROTO_VERSION`].
    pub version: u32,
    /// The request's id (0 if the request could not be parsed).
    pub id: u64,
    /// Success payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<serde_json::Value>,
    /// Failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    /// Builds from a handler result.
    pub fn from_result(id: u64, r: Result<serde_json::Value, ErrorBody>) -> Self {
        let (ok, error) = match r {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        Response {
            version: PROTO_VERSION,
            id,
            ok,
            error,
        }
    }
}

/// A GM window in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowInfo {
    /// First graphics address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

/// One type and its free capacity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeInfo {
    /// Name.
    pub name: String,
    /// Low GM MiB.
    pub low_gm_mib: u64,
    /// High GM MiB.
    pub high_gm_mib: u64,
    /// Fences.
    pub fences: u32,
    /// Default EDID resolution.
    pub edid: [u32; 2],
    /// How many more vGPUs of this type fit now (from the mediator's partitioner).
    pub available_instances: u32,
    /// Display capabilities (`has_display`, `plane_interfaces`, `max_width`,
    /// `max_height`, `ports`), discoverable without creating a vGPU.
    #[serde(flatten)]
    pub display: DisplayCaps,
}

/// The primary plane, shaped like VFIO's `vfio_device_gfx_plane_info` (`drm_format`,
/// `drm_format_mod`, `width`, `height`, `stride`, `size`, `x_pos`, `y_pos`) plus the
/// fourcc as text, the tiling and the plane's graphics memory (GGTT) address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaneView {
    /// Always `primary`.
    pub drm_plane_type: String,
    /// DRM fourcc code.
    pub drm_format: u32,
    /// The fourcc as four characters (e.g. `XR24`).
    pub fourcc: String,
    /// DRM format modifier.
    pub drm_format_mod: u64,
    /// `linear`, `x` or `y`.
    pub tiling: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per row.
    pub stride: u64,
    /// Bytes of surface the visible area spans.
    pub size: u64,
    /// Position on the pipe.
    pub x_pos: u32,
    /// Position on the pipe.
    pub y_pos: u32,
    /// Surface base in graphics memory.
    pub ggtt_offset: u64,
    /// Pipe (0 = A).
    pub pipe: u32,
}

impl From<&PlaneInfo> for PlaneView {
    fn from(p: &PlaneInfo) -> Self {
        let fourcc = p
            .drm_format
            .to_le_bytes()
            .iter()
            .map(|b| {
                if b.is_ascii_graphic() {
                    char::from(*b)
                } else {
                    '?'
                }
            })
            .collect();
        PlaneView {
            drm_plane_type: "primary".into(),
            drm_format: p.drm_format,
            fourcc,
            drm_format_mod: p.drm_format_mod,
            tiling: match p.tiling {
                Tiling::Linear => "linear",
                Tiling::X => "x",
                Tiling::Y => "y",
            }
            .into(),
            width: p.width,
            height: p.height,
            stride: p.stride,
            size: p.size,
            x_pos: p.x_pos,
            y_pos: p.y_pos,
            ggtt_offset: p.ggtt_offset,
            pipe: p.pipe,
        }
    }
}

/// Counters of one vGPU and its ioreq server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersView {
    /// GGTT PTE writes dropped (outside the windows + frames not owned + bad access).
    pub ggtt_writes_dropped: u64,
    /// The vGPU's counters.
    pub vgpu: VgpuCounters,
    /// The ioreq server's dispatch and map-cache counters.
    pub server: serde_json::Value,
    /// The mediator's statistics: submissions, completions, rejections by reason,
    /// engine time and share (`null` if unavailable).
    #[serde(default)]
    pub mediator: serde_json::Value,
}

/// A screenshot reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenshotInfo {
    /// The plane that was read.
    pub plane: PlaneView,
    /// The PNG (8-bit RGBA), standard base64 with padding.
    pub png_base64: String,
    /// Every surface page was read (missing pixels are transparent black).
    pub complete: bool,
}

/// One vGPU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VgpuInfo {
    /// Guest domain.
    pub domid: u16,
    /// The domain's name (`null` if unknown): XenStore `/local/domain/<domid>/name`, or
    /// for a simulated domain the xl config's `name` or a generated `sim-<domid>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Type (`None` for custom sizes).
    pub type_name: Option<String>,
    /// XenbusState name (`Connected`, `InitWait`, …).
    pub state: String,
    /// Aperture window.
    pub low_gm: WindowInfo,
    /// Hidden window.
    pub high_gm: WindowInfo,
    /// First fence.
    pub fence_base: u32,
    /// Number of fences.
    pub fence_count: u32,
    /// ioreq server id.
    pub server_id: u16,
    /// Guest PCI address of the vGPU.
    pub pci_slot: String,
    /// Guest BAR0 (MMIO + GTT) address.
    pub bar0: u64,
    /// Guest BAR2 (aperture) address.
    pub bar2: u64,
    /// How it was created: `control`, `xenstore` or `resumed`.
    pub origin: String,
    /// GGTT PTE window backing: `trapped` or `ram`.
    #[serde(default)]
    pub ggtt_backing: String,
    /// The primary plane (`info` only; absent when there is none, see `plane_error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plane: Option<PlaneView>,
    /// Why there is no plane (`info` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plane_error: Option<String>,
    /// Counters (`info` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<CountersView>,
}

/// Daemon facts. Fields after `hotplug` are absent from older daemons (read as their
/// defaults: empty, 0, false).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// Protocol version.
    pub version: u32,
    /// `sim` or `xen`.
    pub backend: String,
    /// vGPUs now.
    pub vgpus: usize,
    /// Whether XenStore hotplug is active.
    pub hotplug: bool,
    /// The daemon's own version (its crate version, set by the daemon).
    #[serde(default)]
    pub daemon_version: String,
    /// Seconds since the daemon state was created.
    #[serde(default)]
    pub uptime_s: u64,
    /// Whether the daemon has a XenStore connection that is still open.
    #[serde(default)]
    pub xenstore: bool,
    /// Most vGPUs the daemon will run (`limits.max_vgpus`).
    #[serde(default)]
    pub max_vgpus: u32,
    /// The type `attach` without `--type` uses.
    #[serde(default)]
    pub default_type: String,
}

/// One domain the daemon knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainInfo {
    /// Domain id.
    pub domid: u16,
    /// Its name, if known (see [`VgpuInfo::name`]).
    pub name: Option<String>,
    /// Whether it has a vGPU.
    pub vgpu: bool,
}

/// Decodes a request line (without the newline).
pub fn decode_request(line: &[u8]) -> Result<Request, ProtoError> {
    if line.len() > MAX_LINE {
        return Err(ProtoError::TooLong);
    }
    serde_json::from_slice(line).map_err(|e| ProtoError::Malformed(e.to_string()))
}

/// Encodes a message as one line with its newline.
pub fn encode_line<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec());
    v.push(b'\n');
    v
}

/// Extracts complete lines from a buffer, leaving any partial tail. Errors if the tail
/// grew beyond [`MAX_LINE`] without a newline.
pub fn take_lines(buf: &mut Vec<u8>) -> Result<Vec<Vec<u8>>, ProtoError> {
    let mut lines = Vec::new();
    while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
        let mut line: Vec<u8> = buf.drain(..=pos).collect();
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.len() > MAX_LINE {
            return Err(ProtoError::TooLong);
        }
        lines.push(line);
    }
    if buf.len() > MAX_LINE {
        return Err(ProtoError::TooLong);
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_roundtrip_and_wire_shape() {
        let r = Request {
            version: 1,
            id: 7,
            op: Op::Attach {
                domid: 5,
                type_name: Some("GVTg_V5_4".into()),
            },
        };
        let line = encode_line(&r);
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(
            text.contains(r#""op":{"cmd":"attach","domid":5,"type":"GVTg_V5_4"}"#),
            "{text}"
        );
        assert_eq!(decode_request(&line[..line.len() - 1]).unwrap(), r);
    }

    #[test]
    fn garbage_and_unknowns_rejected() {
        for bad in [
            &b"not json"[..],
            br#"{"version":1,"op":{"cmd":"explode"}}"#,
            br#"{"version":1,"op":{"cmd":"info"}}"#,
            br#"{"version":1,"op":{"cmd":"info","domid":70000}}"#,
            br#"{"version":1,"op":{"cmd":"info","domid":1,"x":1}}"#,
            br#"{"version":1,"op":{"cmd":"list"},"extra":true}"#,
            br#"{"op":{"cmd":"list"}}"#,
        ] {
            assert!(
                decode_request(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn line_splitting() {
        let mut buf = b"a\nb\r\npartial".to_vec();
        assert_eq!(
            take_lines(&mut buf).unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(buf, b"partial");
        let mut big = vec![b'x'; MAX_LINE + 1];
        assert!(matches!(take_lines(&mut big), Err(ProtoError::TooLong)));
    }

    #[test]
    fn replies_of_older_daemons_still_decode() {
        // A version-1 status from before the daemon facts; the `domains` request.
        let st: StatusInfo =
            serde_json::from_str(r#"{"version":1,"backend":"sim","vgpus":0,"hotplug":false}"#)
                .unwrap();
        assert_eq!((st.daemon_version.as_str(), st.uptime_s), ("", 0));
        let op: Request = serde_json::from_str(r#"{"version":1,"op":{"cmd":"domains"}}"#).unwrap();
        assert_eq!(op.op, Op::Domains);
    }

    #[test]
    fn response_shapes() {
        let ok = Response::from_result(3, Ok(serde_json::json!({"a":1})));
        let s = String::from_utf8(encode_line(&ok)).unwrap();
        assert!(!s.contains("error"), "{s}");
        let err = Response::from_result(3, Err(ErrorBody::new(ErrorCode::NoSuchType, "x")));
        let s = String::from_utf8(encode_line(&err)).unwrap();
        assert!(s.contains(r#""code":"no_such_type""#), "{s}");
        let back: Response = serde_json::from_str(s.trim()).unwrap();
        assert_eq!(back, err);
    }
}

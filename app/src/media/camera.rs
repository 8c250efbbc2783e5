//! The local camera: getUserMedia at 640×480 without audio.

use super::MediaError;
use js_sys::{Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{MediaStream, MediaStreamConstraints};

/// Opens the camera; maps the browser's DOMException names to [`MediaError`]s.
pub async fn open() -> Result<MediaStream, MediaError> {
    let window = web_sys::window().ok_or(MediaError::NoCamera)?;
    // Browsers give the camera only to secure pages: over plain HTTP on a LAN address
    // `navigator.mediaDevices` does not even exist.
    let has_devices = Reflect::get(&window.navigator(), &"mediaDevices".into())
        .is_ok_and(|d| !d.is_undefined() && !d.is_null());
    if !window.is_secure_context() || !has_devices {
        let origin = window.location().origin().unwrap_or_default();
        return Err(if window.is_secure_context() {
            MediaError::NoCamera
        } else {
            MediaError::Insecure(origin)
        });
    }
    let devices = window
        .navigator()
        .media_devices()
        .map_err(|_| MediaError::NoCamera)?;
    let constraints = MediaStreamConstraints::new();
    constraints.set_audio(&JsValue::FALSE);
    constraints.set_video(&video_constraints());
    let promise = devices
        .get_user_media_with_constraints(&constraints)
        .map_err(|e| super::js_err("getUserMedia", e))?;
    match JsFuture::from(promise).await {
        Ok(stream) => stream
            .dyn_into::<MediaStream>()
            .map_err(|_| MediaError::Browser("getUserMedia returned no stream".into())),
        Err(err) => Err(classify(&err)),
    }
}

/// `{width: {ideal: 640}, height: {ideal: 480}, frameRate: {ideal: 30}}`.
fn video_constraints() -> JsValue {
    let video = Object::new();
    for (key, value) in [("width", 640.0), ("height", 480.0), ("frameRate", 30.0)] {
        let ideal = Object::new();
        let _ = Reflect::set(&ideal, &"ideal".into(), &value.into());
        let _ = Reflect::set(&video, &key.into(), &ideal);
    }
    video.into()
}

fn classify(err: &JsValue) -> MediaError {
    let name = Reflect::get(err, &"name".into())
        .ok()
        .and_then(|n| n.as_string())
        .unwrap_or_default();
    match name.as_str() {
        "NotAllowedError" | "SecurityError" => MediaError::CameraDenied,
        "NotFoundError" | "OverconstrainedError" => MediaError::NoCamera,
        "NotReadableError" | "AbortError" => MediaError::CameraBusy,
        _ => MediaError::Camera(if name.is_empty() {
            "unknown error".into()
        } else {
            name
        }),
    }
}

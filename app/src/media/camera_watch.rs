//! Watches what can make a blocked camera usable without a reload: the camera permission
//! changing (the user allows it in the site settings) and a camera being plugged in.

use super::EventHandler;
use js_sys::{Object, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Event, PermissionState, PermissionStatus};

/// What the permission is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Granted,
    /// The browser will ask again.
    Prompt,
    Denied,
}

/// The camera permission's status object, watched; the listener goes with it.
pub struct PermissionWatch {
    status: PermissionStatus,
    _on_change: EventHandler,
}

impl Drop for PermissionWatch {
    fn drop(&mut self) {
        self.status.set_onchange(None);
    }
}

/// Asks the Permissions API for the camera's state and calls `on_change` with each later
/// change. `None` where the browser cannot tell (older Firefox, Safari): the page then
/// lets Start ask again.
pub async fn watch_permission(
    mut on_change: impl FnMut(Permission) + 'static,
) -> Option<(Permission, PermissionWatch)> {
    let permissions = web_sys::window()?.navigator().permissions().ok()?;
    let descriptor = Object::new();
    Reflect::set(&descriptor, &"name".into(), &"camera".into()).ok()?;
    let status: PermissionStatus = JsFuture::from(permissions.query(&descriptor).ok()?)
        .await
        .ok()?
        .dyn_into()
        .ok()?;
    let now = read(&status);
    let watched = status.clone();
    let on_change = Closure::<dyn FnMut(Event)>::new(move |_: Event| on_change(read(&watched)));
    status.set_onchange(Some(on_change.as_ref().unchecked_ref()));
    Some((
        now,
        PermissionWatch {
            status,
            _on_change: on_change,
        },
    ))
}

fn read(status: &PermissionStatus) -> Permission {
    match status.state() {
        PermissionState::Granted => Permission::Granted,
        PermissionState::Denied => Permission::Denied,
        _ => Permission::Prompt,
    }
}

/// Calls `on_change` whenever a media device is plugged in or out; the listener goes when
/// the returned handler is dropped (the caller keeps it).
pub fn watch_devices(mut on_change: impl FnMut() + 'static) -> Option<DeviceWatch> {
    let devices = web_sys::window()?.navigator().media_devices().ok()?;
    let handler = Closure::<dyn FnMut(Event)>::new(move |_: Event| on_change());
    devices.set_ondevicechange(Some(handler.as_ref().unchecked_ref()));
    Some(DeviceWatch {
        devices,
        _handler: handler,
    })
}

/// The `devicechange` listener, removed when dropped.
pub struct DeviceWatch {
    devices: web_sys::MediaDevices,
    _handler: EventHandler,
}

impl Drop for DeviceWatch {
    fn drop(&mut self) {
        self.devices.set_ondevicechange(None);
    }
}

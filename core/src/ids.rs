//! Typed identifiers. Each is parsed once, at the edge, and is valid from then on.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} id is empty")]
    Empty { what: &'static str },
    #[error("{what} id `{id}` is longer than {max} characters")]
    TooLong {
        what: &'static str,
        id: String,
        max: usize,
    },
    #[error("{what} id `{id}` contains `{ch}`; allowed are letters, digits and `_ - . :`")]
    BadChar {
        what: &'static str,
        id: String,
        ch: char,
    },
}

/// Longest identifier we accept, in characters.
pub const MAX_ID_LEN: usize = 128;

fn check(what: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { what });
    }
    if s.chars().count() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            what,
            id: s.to_owned(),
            max: MAX_ID_LEN,
        });
    }
    if let Some(ch) = s
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(IdError::BadChar {
            what,
            id: s.to_owned(),
            ch,
        });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses an identifier: non-empty, at most [`MAX_ID_LEN`] characters of
            /// letters, digits and `_ - . :`.
            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check($what, &s)?;
                Ok(Self(s))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A sensor: one measured signal (a flow, a pressure, a meter register …).
    SensorId,
    "sensor"
);
id_type!(
    /// A district metered area (also used as a pressure zone).
    DmaId,
    "DMA"
);
id_type!(
    /// A field device (RTU, logger, smart meter, analyser) that sends readings.
    DeviceId,
    "device"
);
id_type!(
    /// A water-quality monitoring station grouping several quality sensors.
    StationId,
    "station"
);
id_type!(
    /// A pressure-reducing valve.
    PrvId,
    "PRV"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_typical_ids() {
        for s in [
            "p227",
            "A-inlet-flow",
            "RTU-A-01",
            "n54",
            "m.001",
            "水厂1",
            "dev:eui",
        ] {
            SensorId::parse(s).unwrap();
        }
    }

    #[test]
    fn rejects_empty_long_and_odd_characters() {
        assert_eq!(SensorId::parse(""), Err(IdError::Empty { what: "sensor" }));
        assert!(matches!(
            DeviceId::parse("x".repeat(129)),
            Err(IdError::TooLong { .. })
        ));
        let err = DmaId::parse("a/b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "DMA id `a/b` contains `/`; allowed are letters, digits and `_ - . :`"
        );
        assert!(SensorId::parse("with space").is_err());
        assert!(SensorId::parse("plus+").is_err());
    }

    #[test]
    fn deserialize_validates() {
        let ok: SensorId = serde_json::from_str("\"p1\"").unwrap();
        assert_eq!(ok.as_str(), "p1");
        assert!(serde_json::from_str::<SensorId>("\"a#b\"").is_err());
    }
}

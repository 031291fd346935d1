//! The vehicle catalogue: brands (one per dealer, each with the world manufacturer
//! identifier of its VINs) and vehicle models with their price factor and popularity.
//!
//! Constant data only; touches nothing else.

/// A brand sold by a dealer, with the world manufacturer identifier of its VINs.
pub(super) struct Brand {
    pub(super) wmi: &'static str,
}

pub(super) const BRANDS: [Brand; 6] = [
    Brand { wmi: "LSV" }, // SAIC Volkswagen
    Brand { wmi: "LVG" }, // GAC Toyota
    Brand { wmi: "LHG" }, // GAC Honda
    Brand { wmi: "LGB" }, // Dongfeng Nissan
    Brand { wmi: "LSG" }, // SAIC-GM Buick
    Brand { wmi: "LBV" }, // BMW Brilliance
];

/// A vehicle model: its brand, a price factor applied to amounts and a popularity weight.
pub(super) struct Model {
    pub(super) name: &'static str,
    pub(super) brand: u8,
    pub(super) factor: f64,
    pub(super) weight: u32,
}

pub(super) const MODELS: [Model; 13] = [
    Model {
        name: "Lavida",
        brand: 0,
        factor: 0.9,
        weight: 5,
    },
    Model {
        name: "Passat",
        brand: 0,
        factor: 1.15,
        weight: 3,
    },
    Model {
        name: "Tiguan L",
        brand: 0,
        factor: 1.2,
        weight: 2,
    },
    Model {
        name: "Corolla",
        brand: 1,
        factor: 0.95,
        weight: 4,
    },
    Model {
        name: "Camry",
        brand: 1,
        factor: 1.15,
        weight: 3,
    },
    Model {
        name: "RAV4",
        brand: 1,
        factor: 1.1,
        weight: 3,
    },
    Model {
        name: "Civic",
        brand: 2,
        factor: 0.95,
        weight: 3,
    },
    Model {
        name: "Accord",
        brand: 2,
        factor: 1.15,
        weight: 3,
    },
    Model {
        name: "Sylphy",
        brand: 3,
        factor: 0.85,
        weight: 5,
    },
    Model {
        name: "X-Trail",
        brand: 3,
        factor: 1.05,
        weight: 3,
    },
    Model {
        name: "GL8",
        brand: 4,
        factor: 1.3,
        weight: 1,
    },
    Model {
        name: "3 Series",
        brand: 5,
        factor: 1.7,
        weight: 3,
    },
    Model {
        name: "X3",
        brand: 5,
        factor: 1.8,
        weight: 2,
    },
];

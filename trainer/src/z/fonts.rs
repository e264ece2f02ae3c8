//! The font catalogue: which faces render printed digits. A catalogue is a list of font files
//! with what fixes a missing one: the system's training and held-out faces of Debian packages
//! ([`FontSet`]), or every `.ttf`/`.otf` file of a folder (`--z-fonts DIR`).

use ab_glyph::FontVec;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::{Path, PathBuf};

/// The Debian packages of the base training faces and the held-out faces: what
/// `ign-train train --z-printed` (with the default `--z-fonts base`) and `eval --ood` need.
pub const FONT_PACKAGES: &str =
    "fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf fonts-urw-base35";

/// The Debian packages that `--z-fonts wide` adds to [`FONT_PACKAGES`].
pub const WIDE_FONT_PACKAGES: &str = "fonts-dejavu-extra fonts-lato fonts-open-sans \
     fonts-crosextra-carlito fonts-crosextra-caladea fonts-cantarell fonts-go fonts-inconsolata \
     fonts-hack fonts-comfortaa fonts-linuxlibertine fonts-cmu fonts-humor-sans \
     fonts-roboto-unhinted fonts-noto-mono fonts-beteckna";

/// The base training faces: regular, bold, serif, sans and monospaced DejaVu and Liberation.
const TRAIN_FILES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationMono-Regular.ttf",
];

/// What `--z-fonts wide` adds: italics, light, black and condensed weights, humanist,
/// geometric, rounded, old-style and hand-lettered faces of [`WIDE_FONT_PACKAGES`] (and more
/// of fonts-liberation2). None is a clone of a held-out face (Liberation Sans has Arial's
/// metrics; the held-out FreeSans and Nimbus Sans are Helvetica clones).
const WIDE_EXTRA_FILES: &[&str] = &[
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Italic.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSerif-Italic.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSerif-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Oblique.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Italic.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-ExtraLight.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed.ttf",
    "/usr/share/fonts/truetype/lato/Lato-Regular.ttf",
    "/usr/share/fonts/truetype/lato/Lato-Black.ttf",
    "/usr/share/fonts/truetype/lato/Lato-LightItalic.ttf",
    "/usr/share/fonts/truetype/open-sans/OpenSans-Regular.ttf",
    "/usr/share/fonts/truetype/open-sans/OpenSans-Italic.ttf",
    "/usr/share/fonts/truetype/open-sans/OpenSans-ExtraBold.ttf",
    "/usr/share/fonts/truetype/open-sans/OpenSans-CondLight.ttf",
    "/usr/share/fonts/truetype/crosextra/Carlito-Regular.ttf",
    "/usr/share/fonts/truetype/crosextra/Carlito-Italic.ttf",
    "/usr/share/fonts/truetype/crosextra/Caladea-Regular.ttf",
    "/usr/share/fonts/truetype/crosextra/Caladea-Bold.ttf",
    "/usr/share/fonts/opentype/cantarell/Cantarell-Regular.otf",
    "/usr/share/fonts/fonts-go/Go-Regular.ttf",
    "/usr/share/fonts/fonts-go/Go-Italic.ttf",
    "/usr/share/fonts/fonts-go/Go-Mono.ttf",
    "/usr/share/fonts/truetype/inconsolata/Inconsolata.otf",
    "/usr/share/fonts/truetype/hack/Hack-Regular.ttf",
    "/usr/share/fonts/truetype/comfortaa/Comfortaa-Regular.ttf",
    "/usr/share/fonts/truetype/comfortaa/Comfortaa-Bold.ttf",
    "/usr/share/fonts/opentype/linux-libertine/LinLibertine_R.otf",
    "/usr/share/fonts/opentype/linux-libertine/LinLibertine_RI.otf",
    "/usr/share/fonts/opentype/linux-libertine/LinBiolinum_R.otf",
    "/usr/share/fonts/truetype/cmu/cmunrm.ttf",
    "/usr/share/fonts/truetype/cmu/cmunti.ttf",
    "/usr/share/fonts/truetype/cmu/cmunss.ttf",
    "/usr/share/fonts/truetype/cmu/cmuntt.ttf",
    "/usr/share/fonts/truetype/humor-sans/Humor-Sans.ttf",
    "/usr/share/fonts/truetype/roboto/unhinted/RobotoTTF/Roboto-Regular.ttf",
    "/usr/share/fonts/truetype/roboto/unhinted/RobotoTTF/Roboto-Light.ttf",
    "/usr/share/fonts/truetype/noto/NotoMono-Regular.ttf",
    "/usr/share/fonts/truetype/beteckna/Beteckna.ttf",
    // bold sans and mono faces: the held-out NimbusSans-Bold was the face f read worst
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
    "/usr/share/fonts/truetype/lato/Lato-Bold.ttf",
    "/usr/share/fonts/truetype/open-sans/OpenSans-Bold.ttf",
    "/usr/share/fonts/truetype/crosextra/Carlito-Bold.ttf",
    "/usr/share/fonts/fonts-go/Go-Bold.ttf",
    "/usr/share/fonts/truetype/hack/Hack-Bold.ttf",
    "/usr/share/fonts/truetype/roboto/unhinted/RobotoTTF/Roboto-Bold.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansMono-Bold.ttf",
    "/usr/share/fonts/truetype/cmu/cmunbx.ttf",
];

/// The evaluation's faces (FreeFont and URW), never trained on, so that no run is judged on
/// faces it saw.
const HELD_OUT_FILES: &[&str] = &[
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSerifItalic.ttf",
    "/usr/share/fonts/opentype/urw-base35/NimbusSans-Bold.otf",
    "/usr/share/fonts/opentype/urw-base35/URWBookman-Light.otf",
    "/usr/share/fonts/opentype/urw-base35/C059-Roman.otf",
];

/// The system's sets of faces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FontSet {
    /// DejaVu and Liberation, 7 faces (fonts-dejavu-core, fonts-liberation2).
    Train,
    /// [`FontSet::Train`] and 48 more faces of [`WIDE_FONT_PACKAGES`].
    TrainWide,
    /// FreeFont and URW (fonts-freefont-ttf, fonts-urw-base35), never trained on.
    HeldOut,
}

impl FontSet {
    /// The font files of the set.
    pub fn files(self) -> Vec<&'static str> {
        match self {
            FontSet::Train => TRAIN_FILES.to_vec(),
            FontSet::TrainWide => TRAIN_FILES
                .iter()
                .chain(WIDE_EXTRA_FILES)
                .copied()
                .collect(),
            FontSet::HeldOut => HELD_OUT_FILES.to_vec(),
        }
    }

    /// The Debian packages that install the set.
    pub fn packages(self) -> String {
        match self {
            FontSet::Train => "fonts-dejavu-core fonts-liberation2".into(),
            FontSet::TrainWide => {
                let wide = WIDE_FONT_PACKAGES.split_whitespace().collect::<Vec<_>>();
                format!("{} {}", FontSet::Train.packages(), wide.join(" "))
            }
            FontSet::HeldOut => "fonts-freefont-ttf fonts-urw-base35".into(),
        }
    }
}

/// One loaded face and its name (the file name without extension).
pub struct Face {
    pub name: String,
    pub font: FontVec,
}

/// A list of font files, and the Debian packages that install them (none for a folder).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalogue {
    files: Vec<PathBuf>,
    packages: Option<String>,
}

impl Catalogue {
    /// The files `files`, installed by the Debian `packages` (named when one is missing).
    pub fn new(files: Vec<PathBuf>, packages: Option<String>) -> Self {
        Catalogue { files, packages }
    }

    /// The system faces of `set`.
    pub fn system(set: FontSet) -> Self {
        let files = set.files().into_iter().map(PathBuf::from).collect();
        Catalogue::new(files, Some(set.packages()))
    }

    /// Every `.ttf` and `.otf` file of the folder `dir`, sorted by name; an error naming the
    /// folder when it has none.
    pub fn folder(dir: &Path) -> Result<Self> {
        let entries = std::fs::read_dir(dir).with_context(|| {
            format!(
                "{}: cannot read the font folder (--z-fonts takes base, wide or a folder of .ttf/.otf files)",
                dir.display()
            )
        })?;
        let mut files = Vec::new();
        for entry in entries {
            let path = entry
                .with_context(|| format!("{}: cannot list the font folder", dir.display()))?
                .path();
            let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase());
            if path.is_file() && matches!(ext.as_deref(), Some("ttf" | "otf")) {
                files.push(path);
            }
        }
        if files.is_empty() {
            bail!(
                "{}: no .ttf or .otf file in this font folder; put the faces there or pass --z-fonts base or wide",
                dir.display()
            );
        }
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        Ok(Catalogue::new(files, None))
    }

    /// The font files, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Every face, or an error naming the first one missing and how to install it (a training
    /// run's z must not depend on which faces happen to be installed).
    pub fn load_all(&self) -> Result<Vec<Face>> {
        self.files.iter().map(|p| self.load(p)).collect()
    }

    /// The faces that load; the others are left out.
    pub fn installed(&self) -> Vec<Face> {
        self.files
            .iter()
            .filter_map(|p| self.load(p).ok())
            .collect()
    }

    /// The face in `path`, or an error naming it and what fixes it.
    fn load(&self, path: &Path) -> Result<Face> {
        let bytes = std::fs::read(path).map_err(|e| match &self.packages {
            Some(p) => anyhow::anyhow!(
                "{}: {e}: install the faces with apt-get install {p}",
                path.display()
            ),
            None => anyhow::anyhow!(
                "{}: {e}: the font folder changed; restore the file or choose another --z-fonts",
                path.display()
            ),
        })?;
        let font = FontVec::try_from_vec(bytes).map_err(|e| match &self.packages {
            Some(p) => anyhow::anyhow!(
                "{}: not a font ({e}): reinstall it with apt-get install --reinstall {p}",
                path.display()
            ),
            None => anyhow::anyhow!(
                "{}: not a font ({e}): remove it from the font folder",
                path.display()
            ),
        })?;
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        Ok(Face {
            name: name.into_owned(),
            font,
        })
    }
}

/// Which faces render the printed digits of `z` (the evaluation's held-out faces stay out of
/// both built-in sets). On the command line and in a checkpoint: `base`, `wide` or a folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ZFonts {
    /// DejaVu and Liberation: 7 faces ([`FontSet::Train`]).
    #[default]
    Base,
    /// Those and 48 more: italics, light to black weights, condensed, humanist, geometric,
    /// rounded and hand-lettered faces ([`FontSet::TrainWide`]).
    Wide,
    /// Every `.ttf`/`.otf` file of a folder, sorted by name ([`Catalogue::folder`]).
    Dir(PathBuf),
}

impl ZFonts {
    /// The catalogue of the faces.
    pub fn catalogue(&self) -> Result<Catalogue> {
        match self {
            ZFonts::Base => Ok(Catalogue::system(FontSet::Train)),
            ZFonts::Wide => Ok(Catalogue::system(FontSet::TrainWide)),
            ZFonts::Dir(dir) => Catalogue::folder(dir),
        }
    }
}

impl std::str::FromStr for ZFonts {
    type Err = String;

    /// `base`, `wide`, or any other text as a folder (`./base` for a folder named base).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "" => Err("give base, wide or a folder of .ttf/.otf files".into()),
            "base" => Ok(ZFonts::Base),
            "wide" => Ok(ZFonts::Wide),
            dir => Ok(ZFonts::Dir(PathBuf::from(dir))),
        }
    }
}

impl std::fmt::Display for ZFonts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ZFonts::Base => f.write_str("base"),
            ZFonts::Wide => f.write_str("wide"),
            ZFonts::Dir(dir) => write!(f, "{}", dir.display()),
        }
    }
}

impl Serialize for ZFonts {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ZFonts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_fonts() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fonts")
    }

    #[test]
    fn a_folder_is_its_font_files_sorted_by_name() {
        let c = Catalogue::folder(&fixture_fonts()).unwrap();
        let names: Vec<_> = c.files().iter().map(|p| p.file_name().unwrap()).collect();
        assert_eq!(
            names,
            [
                "Go-Bold.ttf",
                "Go-Italic.ttf",
                "Go-Mono.ttf",
                "Go-Regular.ttf"
            ]
        );
        let faces = c.load_all().unwrap();
        assert_eq!(faces[3].name, "Go-Regular");
        // the licence beside them is no face; a folder without faces is refused by name
        let empty = tempfile::tempdir().unwrap();
        std::fs::write(empty.path().join("LICENSE"), "text").unwrap();
        let err = format!("{:#}", Catalogue::folder(empty.path()).unwrap_err());
        assert!(
            err.contains(&empty.path().display().to_string()) && err.contains("no .ttf or .otf"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            Catalogue::folder(&empty.path().join("no")).unwrap_err()
        );
        assert!(err.contains("cannot read the font folder"), "{err}");
    }

    #[test]
    fn a_missing_or_broken_face_names_its_packages() {
        let missing = fixture_fonts().join("Missing-Face.ttf");
        let c = Catalogue::new(
            vec![fixture_fonts().join("Go-Mono.ttf"), missing],
            Some(FontSet::Train.packages()),
        );
        assert_eq!(c.installed().len(), 1);
        let err = format!("{:#}", c.load_all().err().expect("a face is missing"));
        assert!(
            err.contains("Missing-Face.ttf")
                && err.contains("apt-get install fonts-dejavu-core fonts-liberation2"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("Bad.ttf");
        std::fs::write(&bad, "not a font").unwrap();
        let c = Catalogue::new(vec![bad], Some(FontSet::HeldOut.packages()));
        let err = format!("{:#}", c.load_all().err().expect("not a font"));
        assert!(
            err.contains("not a font") && err.contains("--reinstall fonts-freefont-ttf"),
            "{err}"
        );
    }

    #[test]
    fn z_fonts_parse_print_and_keep_old_checkpoints_readable() {
        for (text, fonts) in [
            ("base", ZFonts::Base),
            ("wide", ZFonts::Wide),
            ("my/faces", ZFonts::Dir("my/faces".into())),
        ] {
            assert_eq!(text.parse::<ZFonts>().unwrap(), fonts);
            assert_eq!(fonts.to_string(), text);
            let json = serde_json::to_string(&fonts).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<ZFonts>(&json).unwrap(), fonts);
        }
        assert!("".parse::<ZFonts>().is_err());
        assert_eq!(
            ZFonts::Base.catalogue().unwrap(),
            Catalogue::system(FontSet::Train)
        );
        let dir = ZFonts::Dir(fixture_fonts()).catalogue().unwrap();
        assert_eq!(dir.files().len(), 4);
    }
}

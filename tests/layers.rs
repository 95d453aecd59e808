//! The source tree shows the architecture: each layer only uses the ones
//! below it (core < store < hub < http < server < lib.rs < bin), and no
//! file of `src/` depends on itself through others (no circle).
//!
//! The import graph is built from the syntax, not from a grep: every `use`
//! tree (`use crate::{a, b::{c}}`, `self::`, `super::`, a child module's
//! name), every path in code (`crate::hub::Hub::new()` in a body, a type, an
//! attribute's path) and the paths inside macro calls. A path is followed to
//! the file that defines what it names: through the modules (`mod` items,
//! `#[path]`, inline `mod tests {}`) and through re-exports (`pub use` in a
//! `mod.rs`), so `crate::http::PeerAddr` is an edge to `http/auth.rs`, not
//! to `http/mod.rs`. A `pub use` is a signpost, not a dependency of its
//! file; `mod` declarations are structure. Items behind `cfg` count whatever
//! the cfg (tests, loom, each feature): a circle in any build is a circle.
//! Doc comments may link anywhere.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// The layers, lowest first; a file may use its own layer and those before.
const LAYERS: [&str; 7] = ["core", "store", "hub", "http", "server", "lib.rs", "bin"];

/// Which crate of the package a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Krate {
    Lib,
    Bin,
}

/// A module: its crate and its path from the crate root.
type ModPath = (Krate, Vec<String>);

/// Where a path was written: the file and the line.
#[derive(Debug, Clone)]
struct Site {
    line: usize,
    what: String,
}

/// What the parser learns from the files; then [`Graph::resolve`] turns
/// each use into an edge between files.
#[derive(Default)]
struct Graph {
    /// Files by index, as paths relative to the package (`src/http/mod.rs`).
    files: Vec<String>,
    /// The files of each module (two for `jwt`: `jwt.rs` and `no_jwt.rs`;
    /// the file itself for an inline module).
    modules: BTreeMap<ModPath, Vec<usize>>,
    /// Names defined in a module, with the files that define them.
    defs: HashMap<ModPath, HashMap<String, Vec<usize>>>,
    /// `pub use` in a module: name -> the absolute paths it stands for
    /// (`None` for a path outside the package).
    reexports: HashMap<ModPath, HashMap<String, Vec<Option<ModPath>>>>,
    /// `pub use a::*` in a module.
    globs: HashMap<ModPath, Vec<ModPath>>,
    /// Every use of a path: the file, the absolute path, where.
    uses: Vec<(usize, ModPath, Site)>,
}

/// Reads the sources: the real `src/`, or a test's files.
type Reader<'a> = &'a dyn Fn(&Path) -> Option<String>;

impl Graph {
    /// Parses the crate whose root file is `root` (and every module file
    /// it declares).
    fn parse_crate(&mut self, krate: Krate, root: &Path, read: Reader<'_>) {
        let mut queue = vec![(root.to_path_buf(), Vec::<String>::new())];
        while let Some((path, module)) = queue.pop() {
            let text =
                read(&path).unwrap_or_else(|| panic!("{} is declared but missing", path.display()));
            let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let id = self.files.len();
            self.files.push(path.display().to_string());
            self.modules
                .entry((krate, module.clone()))
                .or_default()
                .push(id);
            // A `mod x;` in `a/mod.rs`, `lib.rs` or `main.rs` is `a/x.rs`;
            // in `a/b.rs` it is `a/b/x.rs`.
            let dir = path.parent().unwrap().to_path_buf();
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            let child_dir = if ["mod", "lib", "main"].contains(&stem.as_str()) {
                dir.clone()
            } else {
                dir.join(&stem)
            };
            let mut children = Vec::new();
            self.items(krate, id, &module, &file.items, &mut |name, attr_path| {
                let file = match attr_path {
                    Some(p) => dir.join(p),
                    None => {
                        let flat = child_dir.join(format!("{name}.rs"));
                        if read(&flat).is_some() {
                            flat
                        } else {
                            child_dir.join(name).join("mod.rs")
                        }
                    }
                };
                children.push((file, name.to_owned()));
            });
            for (file, name) in children {
                let mut m = module.clone();
                m.push(name);
                queue.push((file, m));
            }
        }
    }

    /// Records the items of `module` (written in file `id`): definitions,
    /// re-exports, uses; `declare` is told each `mod x;` (with its
    /// `#[path]`).
    fn items(
        &mut self,
        krate: Krate,
        id: usize,
        module: &[String],
        items: &[syn::Item],
        declare: &mut dyn FnMut(&str, Option<String>),
    ) {
        let key = (krate, module.to_vec());
        // Child modules, for paths that start with one's name.
        let children: BTreeSet<String> = items
            .iter()
            .filter_map(|i| match i {
                syn::Item::Mod(m) => Some(m.ident.to_string()),
                _ => None,
            })
            .collect();
        // `pub use` of this module, and the names its code uses: a
        // re-exported name the module's own code uses is a dependency.
        let mut signposts: Vec<(String, ModPath, String)> = Vec::new();
        let mut names: Vec<(String, usize)> = Vec::new();
        for item in items {
            let name = match item {
                syn::Item::Const(i) => Some(&i.ident),
                syn::Item::Enum(i) => Some(&i.ident),
                syn::Item::Fn(i) => Some(&i.sig.ident),
                syn::Item::Macro(i) => i.ident.as_ref(),
                syn::Item::Static(i) => Some(&i.ident),
                syn::Item::Struct(i) => Some(&i.ident),
                syn::Item::Trait(i) => Some(&i.ident),
                syn::Item::Type(i) => Some(&i.ident),
                syn::Item::Union(i) => Some(&i.ident),
                _ => None,
            };
            if let Some(name) = name {
                let defs = self.defs.entry(key.clone()).or_default();
                defs.entry(name.to_string()).or_default().push(id);
            }
            match item {
                syn::Item::Mod(m) => {
                    let name = m.ident.to_string();
                    let mut child = module.to_vec();
                    child.push(name.clone());
                    match &m.content {
                        Some((_, inner)) => {
                            self.modules
                                .entry((krate, child.clone()))
                                .or_default()
                                .push(id);
                            self.items(krate, id, &child, inner, declare);
                        }
                        None => declare(&name, path_attr(&m.attrs)),
                    }
                }
                syn::Item::Use(u) => {
                    let mut flat = Vec::new();
                    flatten(&u.tree, Vec::new(), &mut flat);
                    let public = !matches!(u.vis, syn::Visibility::Inherited);
                    for (segs, alias) in flat {
                        let line = u.use_token.span.start().line;
                        let abs = absolute(krate, module, &children, &segs);
                        if public {
                            if let Some(abs) = &abs {
                                signposts.push((alias.clone(), abs.clone(), segs.join("::")));
                            }
                            match segs.last().map(String::as_str) {
                                Some("*") => {
                                    if let Some(mut g) = abs {
                                        g.1.pop();
                                        self.globs.entry(key.clone()).or_default().push(g);
                                    }
                                }
                                _ => {
                                    let map = self.reexports.entry(key.clone()).or_default();
                                    map.entry(alias).or_default().push(abs);
                                }
                            }
                        } else if let Some(abs) = abs {
                            let what = format!("use {}", segs.join("::"));
                            self.uses.push((id, abs, Site { line, what }));
                        }
                    }
                }
                other => {
                    let mut v = Paths {
                        krate,
                        module,
                        children: &children,
                        found: Vec::new(),
                        names: Vec::new(),
                    };
                    v.visit_item(other);
                    for (abs, site) in v.found {
                        self.uses.push((id, abs, site));
                    }
                    names.extend(v.names);
                }
            }
        }
        for (alias, abs, written) in signposts {
            if let Some((_, line)) = names.iter().find(|(n, _)| *n == alias) {
                let what = format!("pub use {written}, used as {alias}");
                self.uses.push((id, abs, Site { line: *line, what }));
            }
        }
    }

    /// The files that define what `path` names, following modules and
    /// re-exports. `None` if the path leads out of the package.
    fn resolve(&self, path: &ModPath, depth: usize) -> Option<BTreeSet<usize>> {
        let (krate, segs) = path;
        // The longest prefix that is a module.
        let k = (0..=segs.len())
            .rev()
            .find(|&k| self.modules.contains_key(&(*krate, segs[..k].to_vec())))?;
        let module = (*krate, segs[..k].to_vec());
        let files: BTreeSet<usize> = self.modules[&module].iter().copied().collect();
        let Some(name) = segs.get(k) else {
            return Some(files);
        };
        if name == "*" || depth > 16 {
            return Some(files);
        }
        if let Some(defined) = self.defs.get(&module).and_then(|d| d.get(name)) {
            return Some(defined.iter().copied().collect());
        }
        let rest = &segs[k + 1..];
        let follow = |target: &ModPath| {
            let mut next = target.1.clone();
            next.extend_from_slice(rest);
            self.resolve(&(target.0, next), depth + 1)
        };
        if let Some(targets) = self.reexports.get(&module).and_then(|r| r.get(name)) {
            let mut out = BTreeSet::new();
            for target in targets {
                match target {
                    Some(t) => out.extend(follow(t).unwrap_or_else(|| files.clone())),
                    // A re-export of another crate's item: the file that
                    // chose it (a shim such as `hub/sync`) is the dependency.
                    None => out.extend(files.iter().copied()),
                }
            }
            return Some(out);
        }
        for glob in self.globs.get(&module).into_iter().flatten() {
            let mut next = glob.1.clone();
            next.push(name.clone());
            next.extend_from_slice(rest);
            if let Some(found) = self.resolve(&(glob.0, next), depth + 1) {
                return Some(found);
            }
        }
        // An enum variant, a macro, a method: the module's own file.
        Some(files)
    }

    /// Edges between files, each with where it was written.
    fn edges(&self) -> BTreeMap<(usize, usize), Vec<Site>> {
        let mut edges: BTreeMap<(usize, usize), Vec<Site>> = BTreeMap::new();
        for (from, path, site) in &self.uses {
            for to in self.resolve(path, 0).into_iter().flatten() {
                if to != *from {
                    edges.entry((*from, to)).or_default().push(site.clone());
                }
            }
        }
        edges
    }

    /// The layer of a file, by its folder.
    fn layer(&self, file: usize) -> usize {
        let f = &self.files[file];
        let rel = f.split("src/").last().unwrap();
        let name = if rel.starts_with("bin/") {
            "bin"
        } else if rel == "lib.rs" {
            "lib.rs"
        } else {
            rel.split('/').next().unwrap()
        };
        LAYERS
            .iter()
            .position(|l| *l == name)
            .unwrap_or_else(|| panic!("{f}: in no layer of {LAYERS:?}"))
    }

    /// The imports that go up a layer.
    fn upward(&self) -> Vec<String> {
        let mut bad = Vec::new();
        for ((from, to), sites) in self.edges() {
            let (lf, lt) = (self.layer(from), self.layer(to));
            if lt > lf {
                for s in sites {
                    bad.push(format!(
                        "{}:{}: {} ({}) uses {} ({}): {}",
                        self.files[from],
                        s.line,
                        LAYERS[lf],
                        self.files[from],
                        LAYERS[lt],
                        self.files[to],
                        s.what
                    ));
                }
            }
        }
        bad
    }

    /// The circles: every group of files that depend on each other
    /// (strongly connected, Tarjan), with the edges inside it.
    fn circles(&self) -> Vec<(BTreeSet<String>, String)> {
        let edges = self.edges();
        let n = self.files.len();
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
        for &(a, b) in edges.keys() {
            next[a].push(b);
        }
        let groups = strongly_connected(&next);
        let mut out = Vec::new();
        for group in groups.into_iter().filter(|g| g.len() > 1) {
            let members: BTreeSet<usize> = group.into_iter().collect();
            let mut text = String::new();
            let names: BTreeSet<String> = members.iter().map(|&f| self.files[f].clone()).collect();
            let list: Vec<&str> = names.iter().map(String::as_str).collect();
            let _ = writeln!(text, "circle through {}:", list.join(", "));
            for ((a, b), sites) in &edges {
                if members.contains(a) && members.contains(b) {
                    let s = &sites[0];
                    let _ = writeln!(
                        text,
                        "  {}:{} -> {}: {}",
                        self.files[*a], s.line, self.files[*b], s.what
                    );
                }
            }
            out.push((names, text));
        }
        out
    }
}

/// `#[path = "..."]` on a module.
fn path_attr(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| match &a.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// A `use` tree as flat paths, each with the name it brings in scope.
fn flatten(tree: &syn::UseTree, prefix: Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    let with = |s: String| {
        let mut p = prefix.clone();
        p.push(s);
        p
    };
    match tree {
        syn::UseTree::Path(p) => flatten(&p.tree, with(p.ident.to_string()), out),
        syn::UseTree::Name(n) if n.ident == "self" => {
            let name = prefix.last().cloned().unwrap_or_default();
            out.push((prefix.clone(), name));
        }
        syn::UseTree::Name(n) => out.push((with(n.ident.to_string()), n.ident.to_string())),
        syn::UseTree::Rename(r) if r.ident == "self" => {
            out.push((prefix.clone(), r.rename.to_string()));
        }
        syn::UseTree::Rename(r) => out.push((with(r.ident.to_string()), r.rename.to_string())),
        syn::UseTree::Glob(_) => out.push((with("*".to_owned()), "*".to_owned())),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                flatten(t, prefix.clone(), out);
            }
        }
    }
}

/// The absolute path of `segs` written in `module`: from `crate::`,
/// `self::`, `super::`, a child module's name, or (in the binary) the
/// library's name. `None` for anything else (another crate, a local name).
fn absolute(
    krate: Krate,
    module: &[String],
    children: &BTreeSet<String>,
    segs: &[String],
) -> Option<ModPath> {
    // A lone `self` is a value; a lone name a variable or a local item.
    if segs.len() < 2 {
        return None;
    }
    let first = &segs[0];
    let (krate, mut base, rest) = match first.as_str() {
        "crate" => (krate, Vec::new(), &segs[1..]),
        "ssehub" if krate == Krate::Bin => (Krate::Lib, Vec::new(), &segs[1..]),
        "self" => (krate, module.to_vec(), &segs[1..]),
        "super" => {
            let mut base = module.to_vec();
            let mut rest = segs;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
            (krate, base, rest)
        }
        c if children.contains(c) => (krate, module.to_vec(), segs),
        _ => return None,
    };
    base.extend(rest.iter().cloned());
    Some((krate, base))
}

/// Collects the paths of an item's code, macro bodies included.
struct Paths<'a> {
    krate: Krate,
    module: &'a [String],
    children: &'a BTreeSet<String>,
    found: Vec<(ModPath, Site)>,
    /// The first segment of every path, with its line: a name a `pub use`
    /// of the module brought in is a use of it too.
    names: Vec<(String, usize)>,
}

impl Paths<'_> {
    fn record(&mut self, segs: Vec<String>, line: usize) {
        self.names.push((segs[0].clone(), line));
        if let Some(abs) = absolute(self.krate, self.module, self.children, &segs) {
            let what = segs.join("::");
            self.found.push((abs, Site { line, what }));
        }
    }

    /// `crate::a::b` (and `self::`, `super::`, `ssehub::`, child modules)
    /// in a macro's tokens.
    fn scan(&mut self, tokens: TokenStream) {
        let mut flat = Vec::new();
        flatten_tokens(tokens, &mut flat);
        let mut i = 0;
        while i < flat.len() {
            if let TokenTree::Ident(id) = &flat[i] {
                let mut segs = vec![id.to_string()];
                let line = id.span().start().line;
                self.names.push((segs[0].clone(), line));
                let mut j = i + 1;
                while let (
                    Some(TokenTree::Punct(a)),
                    Some(TokenTree::Punct(b)),
                    Some(TokenTree::Ident(next)),
                ) = (flat.get(j), flat.get(j + 1), flat.get(j + 2))
                {
                    if a.as_char() != ':' || b.as_char() != ':' {
                        break;
                    }
                    segs.push(next.to_string());
                    j += 3;
                }
                let preceded_by_colons =
                    i >= 1 && matches!(&flat[i - 1], TokenTree::Punct(p) if p.as_char() == ':');
                if segs.len() > 1 && !preceded_by_colons {
                    self.record(segs, line);
                }
                i = j;
            } else {
                i += 1;
            }
        }
    }
}

fn flatten_tokens(tokens: TokenStream, out: &mut Vec<TokenTree>) {
    for t in tokens {
        match t {
            TokenTree::Group(g) => flatten_tokens(g.stream(), out),
            other => out.push(other),
        }
    }
}

impl<'ast> Visit<'ast> for Paths<'_> {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.leading_colon.is_none() {
            let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
            let line = p.segments[0].ident.span().start().line;
            self.record(segs, line);
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.scan(m.tokens.clone());
        syn::visit::visit_macro(self, m);
    }

    // Doc comments and other attributes' arguments are not code.
    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}

    // `pub(crate)`, `pub(super)`: a scope, not a use.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    // An inline module inside a function: rare, and its paths are relative
    // to it; count them as the function's.
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut flat = Vec::new();
        flatten(&u.tree, Vec::new(), &mut flat);
        for (segs, _) in flat {
            self.record(segs, u.use_token.span.start().line);
        }
    }
}

/// Tarjan's strongly connected components.
fn strongly_connected(next: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        next: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        groups: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State<'_>, v: usize) {
        s.index[v] = Some(s.counter);
        s.low[v] = s.counter;
        s.counter += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &s.next[v] {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut group = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack[w] = false;
                group.push(w);
                if w == v {
                    break;
                }
            }
            s.groups.push(group);
        }
    }
    let n = next.len();
    let mut s = State {
        next,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        counter: 0,
        groups: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.groups
}

/// The graph of the package's `src/`.
fn package() -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &Path| std::fs::read_to_string(root.join(p)).ok();
    let mut g = Graph::default();
    g.parse_crate(Krate::Lib, Path::new("src/lib.rs"), &read);
    g.parse_crate(Krate::Bin, Path::new("src/bin/ssehub/main.rs"), &read);
    // Every file of `src/` is part of the graph: none is left unparsed.
    let mut on_disk = Vec::new();
    rs_files(&root.join("src"), &mut on_disk);
    let parsed: BTreeSet<PathBuf> = g.files.iter().map(|f| root.join(f)).collect();
    for f in on_disk {
        assert!(parsed.contains(&f), "{} is in no module tree", f.display());
    }
    g
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_only_go_down_the_layers() {
    let bad = package().upward();
    assert!(bad.is_empty(), "upward imports:\n{}", bad.join("\n"));
}

#[test]
fn no_file_of_src_depends_on_itself_through_others() {
    let mut unknown = Vec::new();
    let mut known: Vec<BTreeSet<String>> = KNOWN_CIRCLES
        .iter()
        .map(|c| c.iter().map(|f| f.to_string()).collect())
        .collect();
    for (files, text) in package().circles() {
        match known.iter().position(|k| *k == files) {
            Some(i) => {
                known.remove(i);
            }
            None => unknown.push(text),
        }
    }
    assert!(unknown.is_empty(), "{}", unknown.join("\n"));
    assert!(
        known.is_empty(),
        "these circles are gone: strike them from KNOWN_CIRCLES: {known:?}"
    );
}

/// Circles that exist today, each owned by work in progress; the list only
/// shrinks (a circle that is gone fails the test until it is struck off).
const KNOWN_CIRCLES: &[&[&str]] = &[];

/// The parser on a small made-up crate: each way of naming another file
/// is an edge, and each edge goes to the file that defines the name.
#[test]
fn every_way_of_naming_a_file_is_an_edge() {
    let files: HashMap<&str, &str> = HashMap::from([
        (
            "src/lib.rs",
            "pub mod a; pub mod b; mod c; pub use crate::a::Top;",
        ),
        // `a` re-exports what its children define.
        (
            "src/a/mod.rs",
            "mod inner; #[path = \"alt.rs\"] mod other; pub use self::inner::Deep; pub struct Top;",
        ),
        ("src/a/inner.rs", "pub struct Deep;"),
        ("src/a/alt.rs", "use super::inner::Deep as _;"),
        // Each item names another file in another way.
        (
            "src/b.rs",
            "use crate::{a::{self}, c};\n\
             mod tests { use super::*; }\n\
             fn f() { let _ = crate::a::Deep; }\n\
             fn g() -> Option<crate::Top> { None }\n\
             fn h() { format!(\"{}\", crate::c::NAME); }",
        ),
        (
            "src/c.rs",
            "pub const NAME: &str = \"c\"; fn f() { self::g(); } fn g() {}",
        ),
    ]);
    let read = |p: &Path| files.get(p.to_str().unwrap()).map(|s| s.to_string());
    let mut g = Graph::default();
    g.parse_crate(Krate::Lib, Path::new("src/lib.rs"), &read);
    let edges: BTreeSet<(String, String, String)> = g
        .edges()
        .into_iter()
        .flat_map(|((a, b), sites)| {
            let (a, b) = (g.files[a].clone(), g.files[b].clone());
            sites
                .into_iter()
                .map(move |s| (a.clone(), b.clone(), s.what))
        })
        .collect();
    let want = |a: &str, b: &str, what: &str| (a.to_owned(), b.to_owned(), what.to_owned());
    let expected = BTreeSet::from([
        want("src/a/alt.rs", "src/a/inner.rs", "use super::inner::Deep"),
        want("src/b.rs", "src/a/mod.rs", "use crate::a"),
        want("src/b.rs", "src/c.rs", "use crate::c"),
        // Through `a`'s re-export to the file that defines it.
        want("src/b.rs", "src/a/inner.rs", "crate::a::Deep"),
        // Through the root's re-export.
        want("src/b.rs", "src/a/mod.rs", "crate::Top"),
        // Inside a macro call.
        want("src/b.rs", "src/c.rs", "crate::c::NAME"),
    ]);
    assert_eq!(edges, expected);
    assert!(g.circles().is_empty());
}

/// A circle anywhere is found, with the import that closes it; so is an
/// import up a layer.
#[test]
fn a_circle_and_an_upward_import_are_found() {
    let files: HashMap<&str, &str> = HashMap::from([
        ("src/lib.rs", "pub mod core; pub mod http;"),
        (
            "src/core/mod.rs",
            "mod x; mod y; fn f() { crate::http::serve(); }",
        ),
        ("src/core/x.rs", "use super::y::Y; pub struct X;"),
        (
            "src/core/y.rs",
            "pub struct Y; fn f() -> crate::core::x::X { todo!() }",
        ),
        ("src/http/mod.rs", "pub fn serve() {}"),
    ]);
    let read = |p: &Path| files.get(p.to_str().unwrap()).map(|s| s.to_string());
    let mut g = Graph::default();
    g.parse_crate(Krate::Lib, Path::new("src/lib.rs"), &read);
    let circles: Vec<String> = g.circles().into_iter().map(|(_, text)| text).collect();
    assert_eq!(circles.len(), 1, "{circles:?}");
    assert!(
        circles[0].contains("src/core/x.rs:1 -> src/core/y.rs: use super::y::Y"),
        "{}",
        circles[0]
    );
    assert!(
        circles[0].contains("src/core/y.rs:1 -> src/core/x.rs: crate::core::x::X"),
        "{}",
        circles[0]
    );
    let up = g.upward();
    assert_eq!(up.len(), 1, "{up:?}");
    assert!(
        up[0].contains("core (src/core/mod.rs) uses http"),
        "{}",
        up[0]
    );
}

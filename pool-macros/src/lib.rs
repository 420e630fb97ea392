//! The procedural half of `pool::task!`; use that macro, not this crate.
//!
//! `pool::task!` forwards its input here with the path of the `pool` crate
//! in front (`$crate`, so a renamed dependency still works). This crate
//! parses the function, refuses what cannot be a task with a message that
//! says what to write instead, and generates the task's unit struct, its
//! `Task` implementation and its entry in the pool's link-time task table.

#![deny(unsafe_code)]

use proc_macro::TokenStream;
use proc_macro2::{TokenStream as TokenStream2, TokenTree};
use quote::{format_ident, quote, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType, Token, Type};

/// `pool::task!`'s implementation: `task_impl!($crate; fn ...)`.
#[doc(hidden)]
#[proc_macro]
pub fn task_impl(input: TokenStream) -> TokenStream {
    let TaskInput { krate, function } = syn::parse_macro_input!(input as TaskInput);
    match expand(&krate, &function) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

/// The path of the `pool` crate, then the function.
struct TaskInput {
    krate: TokenStream2,
    function: ItemFn,
}

impl Parse for TaskInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<TaskInput> {
        let mut krate = TokenStream2::new();
        while !input.peek(Token![;]) {
            krate.extend([input.parse::<TokenTree>()?]);
        }
        input.parse::<Token![;]>()?;
        let function = input.parse().map_err(|err| {
            syn::Error::new(
                err.span(),
                format!("pool::task! takes one function, such as `pub fn name(x: u64) -> u64 {{ .. }}`: {err}"),
            )
        })?;
        Ok(TaskInput { krate, function })
    }
}

fn expand(krate: &TokenStream2, function: &ItemFn) -> syn::Result<TokenStream2> {
    check_signature(function)?;
    let sig = &function.sig;
    let name = &sig.ident;
    let vis = &function.vis;
    let body = &function.block;
    let (pattern, input) = input_of(function)?;
    let returned = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => {
            check_owned(ty, "returns")?;
            ty.to_token_stream()
        }
    };
    let (output, outcome) = match &sig.output {
        ReturnType::Type(_, ty) if names_a_result(ty) => (
            quote!(<#returned as #krate::__private::TaskResult>::Value),
            quote!(#krate::__private::TaskResult::into_outcome(returned)),
        ),
        _ => (
            returned.clone(),
            quote!(::core::result::Result::Ok(returned)),
        ),
    };
    let Attributes {
        docs,
        cfgs,
        others,
        version,
    } = split_attributes(&function.attrs)?;
    let entry = format_ident!("__POOL_TASK_{}", name);
    let code = code_hash(function);
    Ok(quote! {
        #(#docs)*
        #(#cfgs)*
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        #vis struct #name;

        #(#cfgs)*
        impl #name {
            /// Runs the task in this process, as a plain function call.
            #(#others)*
            #[allow(dead_code, clippy::unused_unit)]
            #vis fn call(&self, #pattern: #input) -> #returned #body
        }

        #(#cfgs)*
        impl #krate::Task for #name {
            type Input = #input;
            type Output = #output;
            type Returned = #returned;
            const NAME: &'static str = ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#name));
            const VERSION: u32 = #version;

            fn call(&self, input: #input) -> #returned {
                #name::call(self, input)
            }

            fn outcome(returned: #returned) -> ::core::result::Result<#output, ::std::string::String> {
                #outcome
            }

            fn registration() -> &'static #krate::__private::TaskEntry {
                #[#krate::__private::linkme::distributed_slice(#krate::__private::TASKS)]
                #[linkme(crate = #krate::__private::linkme)]
                // The entry's `link_section`, linkme's way into the table,
                // is all the `unsafe_code` lint sees here: no unsafe code of
                // ours, and a crate that denies it can still define tasks.
                #[allow(non_upper_case_globals, unsafe_code)]
                static #entry: #krate::__private::TaskEntry = #krate::__private::TaskEntry::new(
                    <#name as #krate::Task>::NAME,
                    #krate::__private::run_encoded::<#name>,
                    <#name as #krate::Task>::VERSION,
                    #code,
                    #krate::__private::type_names::<#name>,
                );
                &#entry
            }
        }
    })
}

/// A hash of the function's signature and body as written: of each
/// token's text and each group's delimiters, so that neither spacing nor
/// comments count, nor how a compiler prints tokens; doc comments and
/// other attributes are left out. A worker whose task of the same name
/// was built from other code is refused by its pool. FNV-1a, written out
/// so that it is the same in every build of this crate.
fn code_hash(function: &ItemFn) -> u64 {
    fn feed(hash: &mut u64, bytes: &[u8]) {
        for &byte in bytes.iter().chain([&0xff]) {
            *hash = (*hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn walk(hash: &mut u64, tokens: TokenStream2) {
        for token in tokens {
            match token {
                TokenTree::Group(group) => {
                    let (open, close) = match group.delimiter() {
                        proc_macro2::Delimiter::Parenthesis => ("(", ")"),
                        proc_macro2::Delimiter::Brace => ("{", "}"),
                        proc_macro2::Delimiter::Bracket => ("[", "]"),
                        proc_macro2::Delimiter::None => ("", ""),
                    };
                    feed(hash, open.as_bytes());
                    walk(hash, group.stream());
                    feed(hash, close.as_bytes());
                }
                TokenTree::Punct(punct) => feed(hash, punct.as_char().to_string().as_bytes()),
                other => feed(hash, other.to_string().as_bytes()),
            }
        }
    }
    let mut hash = 0xcbf2_9ce4_8422_2325;
    walk(&mut hash, function.sig.to_token_stream());
    walk(&mut hash, function.block.to_token_stream());
    hash
}

/// Refuses the kinds of function a worker could not call by name.
fn check_signature(function: &ItemFn) -> syn::Result<()> {
    let sig = &function.sig;
    if let Some(token) = &sig.asyncness {
        return Err(syn::Error::new(
            token.span(),
            "a task cannot be an `async fn`: a worker calls it on its own thread; \
             make it a plain `fn` (block on a runtime inside it if it must await), \
             and await the pool's `AsyncResult` on the calling side instead",
        ));
    }
    if let Some(token) = &sig.unsafety {
        return Err(syn::Error::new(
            token.span(),
            "a task cannot be an `unsafe fn`: workers call it with whatever input they are sent; \
             make it a safe `fn` with an `unsafe` block inside",
        ));
    }
    if let Some(abi) = &sig.abi {
        return Err(syn::Error::new(
            abi.span(),
            "a task cannot have an ABI such as `extern \"C\"`: remove it",
        ));
    }
    let generics = &sig.generics;
    if !generics.params.is_empty() && generics.lifetimes().count() == generics.params.len() {
        return Err(syn::Error::new_spanned(
            generics,
            "a task takes owned values, since they cross to another process: \
             it cannot have lifetime parameters (use `String` for `&'a str` or \
             `Cow<'a, str>`, `Vec<T>` for `&'a [T]`)",
        ));
    }
    if !generics.params.is_empty() || generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            generics,
            "a task cannot be generic: a worker finds it by name, so a task has one input \
             type and one output type; define one task per concrete type \
             (each may call a generic function)",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new(
            variadic.span(),
            "a task cannot be variadic",
        ));
    }
    Ok(())
}

/// The pattern and type of the task's input: one argument as it is,
/// several as a tuple, none as `()`.
fn input_of(function: &ItemFn) -> syn::Result<(TokenStream2, TokenStream2)> {
    let mut patterns = Vec::new();
    let mut types = Vec::new();
    for arg in &function.sig.inputs {
        match arg {
            FnArg::Receiver(receiver) => {
                return Err(syn::Error::new_spanned(
                    receiver,
                    "a task is a free function, not a method: it cannot take `self`; \
                     pass the value as an argument (an owned, serializable type)",
                ))
            }
            FnArg::Typed(typed) => {
                check_owned(&typed.ty, "takes")?;
                if let Pat::Ident(ident) = &*typed.pat {
                    if let Some(by_ref) = &ident.by_ref {
                        return Err(syn::Error::new(
                            by_ref.span(),
                            "a task takes its arguments by value: remove `ref`",
                        ));
                    }
                }
                patterns.push(typed.pat.to_token_stream());
                types.push(typed.ty.to_token_stream());
            }
        }
    }
    Ok(match patterns.len() {
        0 => (quote!(()), quote!(())),
        1 => (patterns.remove(0), types.remove(0)),
        _ => (quote!((#(#patterns,)*)), quote!((#(#types,)*))),
    })
}

/// Inputs and outputs cross a process boundary, so they must be owned:
/// refuses borrowed types, lifetimes other than `'static` and
/// `impl Trait`, anywhere in `ty`, naming the owned type to use.
fn check_owned(ty: &Type, verb: &str) -> syn::Result<()> {
    match ty {
        Type::Reference(reference) => {
            let owned = match &*reference.elem {
                Type::Path(path) if path.path.is_ident("str") => "String".to_string(),
                Type::Path(path) if path.path.is_ident("Path") => "PathBuf".to_string(),
                Type::Slice(slice) => format!("Vec<{}>", written(&slice.elem)),
                other => written(other),
            };
            Err(syn::Error::new_spanned(
                ty,
                format!(
                    "a task {verb} owned values, since they cross to another process: \
                     use `{owned}` instead of `{}`",
                    written(ty)
                ),
            ))
        }
        Type::ImplTrait(_) => Err(syn::Error::new_spanned(
            ty,
            format!("a task {verb} concrete types, not `impl Trait`: name the type"),
        )),
        Type::Tuple(tuple) => tuple.elems.iter().try_for_each(|ty| check_owned(ty, verb)),
        Type::Array(array) => check_owned(&array.elem, verb),
        Type::Slice(slice) => check_owned(&slice.elem, verb),
        Type::Paren(paren) => check_owned(&paren.elem, verb),
        Type::Group(group) => check_owned(&group.elem, verb),
        Type::Path(path) => {
            for segment in &path.path.segments {
                let PathArguments::AngleBracketed(args) = &segment.arguments else {
                    continue;
                };
                for arg in &args.args {
                    match arg {
                        GenericArgument::Type(ty) => check_owned(ty, verb)?,
                        GenericArgument::Lifetime(lifetime) if lifetime.ident != "static" => {
                            return Err(syn::Error::new(
                                lifetime.span(),
                                format!(
                                    "a task {verb} owned values, since they cross to another \
                                     process: no borrowed lifetime such as `{lifetime}` \
                                     (use `String` for `Cow<'_, str>`, `Vec<T>` for `Cow<'_, [T]>`)"
                                ),
                            ))
                        }
                        _ => {}
                    }
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A type as its user would write it, without the spaces that printing
/// tokens puts between all of them (`& 'a [u8]` becomes `&'a [u8]`).
fn written(ty: &Type) -> String {
    let mut text = ty.to_token_stream().to_string();
    for (spaced, tight) in [
        ("& ", "&"),
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ,", ","),
        (" :: ", "::"),
        (":: ", "::"),
    ] {
        text = text.replace(spaced, tight);
    }
    text
}

/// Whether the return type is spelled as a `Result`: `Result<T, E>`,
/// `std::io::Result<T>`, `anyhow::Result<T>`, any alias whose last segment
/// is `Result`. Its type is then checked by the `TaskResult` trait, which
/// only `core::result::Result<T, E: Display>` implements.
fn names_a_result(ty: &Type) -> bool {
    match ty {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "Result"),
        Type::Paren(paren) => names_a_result(&paren.elem),
        Type::Group(group) => names_a_result(&group.elem),
        _ => false,
    }
}

/// A task function's attributes, sorted by where they go.
struct Attributes<'a> {
    /// Doc comments, for the struct.
    docs: Vec<&'a Attribute>,
    /// `cfg`s, for everything generated.
    cfgs: Vec<&'a Attribute>,
    /// Any other (`#[allow]`, `#[inline]`, ...), for the body's `call`.
    others: Vec<&'a Attribute>,
    /// `#[version = N]`, 0 when absent.
    version: u32,
}

/// Sorts the attributes, taking out `#[version = N]`.
fn split_attributes(attrs: &[Attribute]) -> syn::Result<Attributes<'_>> {
    let mut sorted = Attributes {
        docs: Vec::new(),
        cfgs: Vec::new(),
        others: Vec::new(),
        version: 0,
    };
    let mut versions = 0;
    for attr in attrs {
        if attr.path().is_ident("doc") {
            sorted.docs.push(attr);
        } else if attr.path().is_ident("cfg") {
            sorted.cfgs.push(attr);
        } else if attr.path().is_ident("version") {
            versions += 1;
            if versions > 1 {
                return Err(syn::Error::new_spanned(
                    attr,
                    "a task has one `#[version = N]`",
                ));
            }
            sorted.version = version_of(attr)?;
        } else {
            sorted.others.push(attr);
        }
    }
    Ok(sorted)
}

/// The `N` of `#[version = N]`: an integer that fits a `u32`.
fn version_of(attr: &Attribute) -> syn::Result<u32> {
    let wrong = || {
        syn::Error::new_spanned(
            attr,
            "a task's version is written `#[version = N]`, with `N` a whole number \
             from 0 to 4294967295, such as `#[version = 2]`",
        )
    };
    let syn::Meta::NameValue(pair) = &attr.meta else {
        return Err(wrong());
    };
    match &pair.value {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(int),
            ..
        }) => int.base10_parse::<u32>().map_err(|_| wrong()),
        _ => Err(wrong()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(source: &str) -> u64 {
        code_hash(&syn::parse_str(source).unwrap())
    }

    #[test]
    fn the_code_hash_sees_code_but_not_spacing_comments_or_docs() {
        let base = hash("fn bump(x: u64) -> u64 { x + 1 }");
        let same = [
            "fn bump(x:u64)->u64{x+1}",
            "/// Docs.\n#[inline] fn bump(x: u64) -> u64 {\n    // why\n    x + 1\n}",
        ];
        for source in same {
            assert_eq!(hash(source), base, "{source}");
        }
        let other = [
            "fn bump(x: u64) -> u64 { x + 2 }",
            "fn bump(x: u32) -> u64 { x + 1 }",
            "fn bump(x: u64) -> u64 { (x + 1) }",
            "fn bumps(x: u64) -> u64 { x + 1 }",
        ];
        for source in other {
            assert_ne!(hash(source), base, "{source}");
        }
    }
}

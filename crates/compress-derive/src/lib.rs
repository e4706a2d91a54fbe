//! `#[derive(Module)]`: the two parameter walks of netcompress's `Module` trait, written for
//! a struct of layers and parameters.
//!
//! Use it through `netcompress` (`use netcompress::prelude::*;` brings the trait and the
//! derive, both called `Module`) or through `compress-core` (`compress_core::Module`). Every
//! field that is not skipped must implement `Module<F>` (layers, `Param<F>`, and `Vec`,
//! `Option`, `Box` of those) and is visited under its name, in declaration order.
//!
//! Field attributes:
//! - `#[module(skip)]`: not visited (caches, configuration, anything without parameters);
//! - `#[module(rename = "LayerNorm")]`: the path segment to use instead of the field name;
//! - `#[module(flatten)]`: visited with no path segment of its own (a wrapper's inner layer);
//! - `#[module(bias)]`: a `Param` (or `Option<Param>`, `Vec<Param>`) that is a bias: its kind
//!   becomes `ParamKind::Bias` on every mutable walk, so default filters leave it alone
//!   whatever its name.
//!
//! Struct attributes:
//! - `#[module(float = f32)]`: the scalar type, when it is neither a type parameter named `F`
//!   (or the only type parameter) nor spelled out as `f32`/`f64` in a field's type; a struct
//!   with no scalar anywhere (every field skipped) implements `Module<F>` for every `F`;
//! - `#[module(crate = "path")]`: where the core traits live (the default is
//!   `::compress_core` for the derive of compress-core, `::netcompress::core` for the one
//!   re-exported by netcompress).

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{
    Data, DeriveInput, GenericArgument, GenericParam, Ident, LitStr, Path, PathArguments, Type,
    parse_macro_input, parse_quote,
};

/// Implements `Module<F>` (`visit` and `visit_mut`) for a struct: see the crate
/// documentation for the attributes. Generated paths start at `::compress_core`.
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    expand(parse_macro_input!(input as DeriveInput), "::compress_core")
}

/// The same derive with paths starting at `::netcompress::core`; netcompress re-exports it
/// as `Module`.
#[doc(hidden)]
#[proc_macro_derive(NetcompressModule, attributes(module))]
pub fn derive_netcompress_module(input: TokenStream) -> TokenStream {
    expand(
        parse_macro_input!(input as DeriveInput),
        "::netcompress::core",
    )
}

fn expand(input: DeriveInput, default_crate: &str) -> TokenStream {
    match expand_inner(&input, default_crate) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// One visited field.
struct FieldSpec {
    access: TokenStream2,
    segment: Option<String>,
    bias: bool,
    span: Span,
}

fn expand_inner(input: &DeriveInput, default_crate: &str) -> syn::Result<TokenStream2> {
    let mut krate: Path = syn::parse_str(default_crate)?;
    let mut float: Option<Type> = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("module")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("float") {
                let value = meta.value()?;
                float = Some(if value.peek(LitStr) {
                    value.parse::<LitStr>()?.parse()?
                } else {
                    value.parse()?
                });
                Ok(())
            } else if meta.path.is_ident("crate") {
                krate = meta.value()?.parse::<LitStr>()?.parse()?;
                Ok(())
            } else {
                Err(meta.error("expected `float = <type>` or `crate = \"path\"`"))
            }
        })?;
    }

    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            input.span(),
            "#[derive(Module)] supports structs only; implement Module by hand for enums",
        ));
    };
    let mut specs = Vec::new();
    let mut visited_types = Vec::new();
    for (i, field) in data.fields.iter().enumerate() {
        let (mut skip, mut flatten, mut bias, mut rename) = (false, false, false, None);
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("module")) {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("skip") {
                    skip = true;
                } else if meta.path.is_ident("flatten") {
                    flatten = true;
                } else if meta.path.is_ident("bias") {
                    bias = true;
                } else if meta.path.is_ident("rename") {
                    rename = Some(meta.value()?.parse::<LitStr>()?.value());
                } else {
                    return Err(
                        meta.error("expected `skip`, `flatten`, `bias` or `rename = \"segment\"`")
                    );
                }
                Ok(())
            })?;
        }
        if skip {
            continue;
        }
        let (access, name) = match &field.ident {
            Some(ident) => (quote!(#ident), ident.to_string()),
            None => {
                let index = syn::Index::from(i);
                (quote!(#index), i.to_string())
            }
        };
        let segment = if flatten {
            None
        } else {
            Some(rename.unwrap_or_else(|| name.trim_start_matches("r#").to_string()))
        };
        visited_types.push(field.ty.clone());
        specs.push(FieldSpec {
            access,
            segment,
            bias,
            span: field.ty.span(),
        });
    }

    let mut generics = input.generics.clone();
    let float = match float {
        Some(f) => f,
        None => match float_param(&generics) {
            Some(ident) => parse_quote!(#ident),
            None => match visited_types.iter().find_map(concrete_float) {
                Some(t) => t,
                None if visited_types.is_empty() => {
                    let ident = format_ident!("__F");
                    generics.params.push(parse_quote!(#ident: #krate::Float));
                    parse_quote!(#ident)
                }
                None => {
                    return Err(syn::Error::new(
                        input.ident.span(),
                        "cannot tell the scalar type: add #[module(float = f32)] (or f64, or \
                         the name of the type parameter)",
                    ));
                }
            },
        },
    };
    if let Type::Path(tp) = &float
        && let Some(ident) = tp.path.get_ident()
        && generics
            .type_params()
            .any(|p| p.ident == *ident && p.ident != "__F")
    {
        generics
            .make_where_clause()
            .predicates
            .push(parse_quote!(#ident: #krate::Float));
    }

    let name = &input.ident;
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let (_, ty_generics, _) = input.generics.split_for_impl();

    let visits = specs.iter().map(|f| {
        let access = &f.access;
        let call =
            quote_spanned!(f.span=> #krate::Module::<#float>::visit(&self.#access, p, visitor));
        match &f.segment {
            Some(seg) => quote!(path.scoped(#seg, |p| #call);),
            None => quote!({ let p = &mut *path; #call; }),
        }
    });
    let visits_mut = specs.iter().map(|f| {
        let access = &f.access;
        let call = quote_spanned!(f.span=>
            #krate::Module::<#float>::visit_mut(&mut self.#access, p, visitor));
        let mark = f.bias.then(|| {
            quote_spanned!(f.span=>
                #krate::__private::MarkKind::<#float>::mark_kind(
                    &mut self.#access, #krate::ParamKind::Bias);)
        });
        match &f.segment {
            Some(seg) => quote!(#mark path.scoped(#seg, |p| #call)?;),
            None => quote!(#mark { let p = &mut *path; #call?; }),
        }
    });
    let unused = specs.is_empty().then(|| quote!(let _ = (path, visitor);));
    let unused_mut = unused.clone();

    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Module<#float> for #name #ty_generics #where_clause {
            fn visit(
                &self,
                path: &mut #krate::ParamPath,
                visitor: &mut dyn #krate::ParamVisitor<#float>,
            ) {
                #unused
                #(#visits)*
            }

            fn visit_mut(
                &mut self,
                path: &mut #krate::ParamPath,
                visitor: &mut dyn #krate::ParamVisitorMut<#float>,
            ) -> #krate::Result<()> {
                #unused_mut
                #(#visits_mut)*
                Ok(())
            }
        }
    })
}

/// The type parameter named `F`, or the only type parameter.
fn float_param(generics: &syn::Generics) -> Option<Ident> {
    let params: Vec<&Ident> = generics
        .params
        .iter()
        .filter_map(|p| match p {
            GenericParam::Type(t) => Some(&t.ident),
            _ => None,
        })
        .collect();
    params
        .iter()
        .find(|i| **i == "F")
        .or_else(|| (params.len() == 1).then(|| &params[0]))
        .map(|i| (*i).clone())
}

/// `f32` or `f64` written anywhere in a field's type (`Param<f32>`, `Vec<Linear<f64>>`).
fn concrete_float(ty: &Type) -> Option<Type> {
    match ty {
        Type::Path(tp) => {
            if tp.qself.is_none()
                && let Some(ident) = tp.path.get_ident()
                && (ident == "f32" || ident == "f64")
            {
                return Some(ty.clone());
            }
            tp.path
                .segments
                .iter()
                .find_map(|seg| match &seg.arguments {
                    PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
                        GenericArgument::Type(t) => concrete_float(t),
                        _ => None,
                    }),
                    _ => None,
                })
        }
        Type::Reference(r) => concrete_float(&r.elem),
        Type::Paren(p) => concrete_float(&p.elem),
        Type::Group(g) => concrete_float(&g.elem),
        _ => None,
    }
}

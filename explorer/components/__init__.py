"""The component registry: every block, neck and head kind, declared once beside its module.

The pattern is torchvision's ``register_model`` and torch's ``register_flop_formula``: the declaration (name,
title, tasks, what it needs, its settings, its cost estimate, its builder) sits next to the ``nn.Module`` it
describes, and everything else — spec validation, ``compose.build``, the budget check, the Compose widgets, the
README's list — asks the registry. A kind's name is spelled in its own module only.

Declaring modules are found, not listed: every module of the packages in ``registry.PACKAGES`` is imported the first
time the registry is read, so a new neck is one new file.
"""
from .registry import (CATEGORIES, Component, Setting, all_components, default, get, kinds_markdown, names, register,
                       titles, with_fact)

__all__ = ["CATEGORIES", "Component", "Setting", "all_components", "default", "get", "kinds_markdown", "names",
           "register", "titles", "with_fact"]

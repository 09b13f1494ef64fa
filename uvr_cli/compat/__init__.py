"""Drop-in replacements for code written against other projects' separation APIs (RVC's uvr5 module)."""

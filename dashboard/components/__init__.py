"""The pieces the pages are built from: picking (runs), charts, pictures, inputs, cache."""

// Placeholder so the target builds; replaced by the HTTP parser.

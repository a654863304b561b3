package hamt

// SetImportReadHook makes ImportDir call fn after reading each file's bytes and before checking
// that the file did not change meanwhile, until the test ends: the place where a test changes a
// file "while it is read" without racing.
func SetImportReadHook(t interface{ Cleanup(func()) }, fn func(key string)) {
	testHookImportRead = fn
	t.Cleanup(func() { testHookImportRead = nil })
}

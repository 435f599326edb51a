#pragma once
// The library's ABI namespace: every name is declared in tokenprune::TOKENPRUNE_ABI, an inline namespace, so code
// writes tokenprune::GPrune as usual. Its name says whether exceptions are on, because some inline functions
// differ between the two modes (fail() throws, or calls the installed handler): a program that links translation
// units built with and without -fno-exceptions gets two separate sets of symbols instead of one body the linker
// picked for both (an ODR violation that aborted or crashed, tests/mixed_exceptions_main.cpp).

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#define TOKENPRUNE_ABI v0_exceptions
#else
#define TOKENPRUNE_ABI v0_no_exceptions
#endif

/* bcryptprimitives.dll for Wine 8, which lacks ProcessPrng: Rust's std
 * (1.78+) imports it on Windows for HashMap keys and random numbers, so the
 * .exe fails to load without it. Built by tests/windows/run.sh with mingw-w64
 * and put beside flagpost.exe; real Windows (10 and later) has its own and
 * never needs this. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom, advapi32 */

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG n = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n;
        length -= n;
    }
    return TRUE;
}

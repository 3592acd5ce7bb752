// error: no_main.p4:1:1: the program has no `main` package instantiation
#include <v1model.p4>

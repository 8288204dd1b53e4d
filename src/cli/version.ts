/** The version `runledger --version` prints (the package version). */
export const VERSION = "0.1.0"

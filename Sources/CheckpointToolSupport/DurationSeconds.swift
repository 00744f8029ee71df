extension Duration {
    /// Seconds as a float.
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// Milliseconds as a float.
    public var milliseconds: Double { seconds * 1000 }
}
